namespace Monitoring.Stream.Tests.Support;

/// <summary>Seeded generators of the adversarial data sets the statistics must survive.</summary>
internal static class Distributions
{
    public static double Gaussian(Random random)
    {
        // Box-Muller; 1 - NextDouble() avoids log(0).
        double u1 = 1.0 - random.NextDouble();
        double u2 = random.NextDouble();
        return Math.Sqrt(-2.0 * Math.Log(u1)) * Math.Cos(2.0 * Math.PI * u2);
    }

    /// <summary>1e9 plus noise of standard deviation 1e-3: a sum of squares loses all of its variance.</summary>
    public static double[] LargeMeanTinySpread(int n, int seed)
    {
        var random = new Random(seed);
        var values = new double[n];
        for (int i = 0; i < n; i++)
        {
            values[i] = 1e9 + (Gaussian(random) * 1e-3);
        }

        return values;
    }

    /// <summary>Pareto with shape 1.1 and scale 1: a heavy right tail.</summary>
    public static double[] Pareto(int n, int seed, double shape = 1.1)
    {
        var random = new Random(seed);
        var values = new double[n];
        for (int i = 0; i < n; i++)
        {
            values[i] = Math.Pow(1.0 - random.NextDouble(), -1.0 / shape);
        }

        return values;
    }

    /// <summary>Log-normal values spread over about nine decades (1e-3 to 1e6 at +-3 sigma).</summary>
    public static double[] LogNormalNineDecades(int n, int seed)
    {
        var random = new Random(seed);
        var values = new double[n];
        double mu = Math.Log(Math.Sqrt(1e-3 * 1e6));
        double sigma = Math.Log(1e6 / 1e-3) / 6;
        for (int i = 0; i < n; i++)
        {
            values[i] = Math.Exp(mu + (sigma * Gaussian(random)));
        }

        return values;
    }

    /// <summary>Mixed signs with zeros: a third negative, a third zero, a third positive, magnitudes over six decades.</summary>
    public static double[] MixedSignsWithZeros(int n, int seed)
    {
        var random = new Random(seed);
        var values = new double[n];
        for (int i = 0; i < n; i++)
        {
            double magnitude = Math.Pow(10, (random.NextDouble() * 6) - 3);
            values[i] = (i % 3) switch
            {
                0 => -magnitude,
                1 => 0,
                _ => magnitude,
            };
        }

        random.Shuffle(values);
        return values;
    }

    public static double[] Negatives(int n, int seed)
    {
        double[] values = LogNormalNineDecades(n, seed);
        for (int i = 0; i < values.Length; i++)
        {
            values[i] = -values[i];
        }

        return values;
    }
}
