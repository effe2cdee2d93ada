namespace Monitoring.Stream.Hosting.Tests.Support;

/// <summary>The reference: statistics computed directly from every value (a sorted copy, two passes).</summary>
internal sealed class ExactStatistics
{
    private readonly double[] _sorted;

    public ExactStatistics(IEnumerable<double> values)
    {
        _sorted = [.. values.Order()];
        Count = _sorted.Length;
        // Incremental mean, then squared deviations from it, and a compensated sum: exact enough as a reference at these sizes.
        double mean = 0;
        for (int i = 0; i < _sorted.Length; i++)
        {
            mean += (_sorted[i] - mean) / (i + 1);
        }

        Mean = mean;
        double m2 = 0, sum = 0, c = 0;
        foreach (double v in _sorted)
        {
            m2 += (v - mean) * (v - mean);
            double t = sum + v;
            c += Math.Abs(sum) >= Math.Abs(v) ? (sum - t) + v : (v - t) + sum;
            sum = t;
        }

        Sum = sum + c;
        M2 = m2;
    }

    public long Count { get; }

    public double Sum { get; }

    public double Mean { get; }

    public double M2 { get; }

    public double Min => _sorted[0];

    public double Max => _sorted[^1];

    public double PopulationStdDev => Math.Sqrt(M2 / Count);

    public double SampleStdDev => Math.Sqrt(M2 / (Count - 1));

    /// <summary>The value at rank floor(q (n - 1)), the definition the sketch approximates.</summary>
    public double Quantile(double q) => _sorted[(int)Math.Floor(q * (Count - 1))];
}
