using System.Numerics;

namespace Monitoring.Stream.Tests.Support;

/// <summary>
/// Exact reference moments: every double is an integer times a power of two, so sums and sums of
/// squares are computed without rounding in <see cref="BigInteger"/> and rounded once at the end.
/// </summary>
internal sealed class ExactMoments
{
    private readonly BigInteger _sum;
    private readonly BigInteger _sumOfSquares;
    private readonly int _exponent;

    public ExactMoments(ReadOnlySpan<double> values)
    {
        Count = values.Length;
        int minExponent = int.MaxValue;
        foreach (double v in values)
        {
            if (v != 0)
            {
                Decompose(v, out _, out int e);
                minExponent = Math.Min(minExponent, e);
            }
        }

        _exponent = minExponent == int.MaxValue ? 0 : minExponent;
        foreach (double v in values)
        {
            if (v == 0)
            {
                continue;
            }

            Decompose(v, out long mantissa, out int e);
            BigInteger x = new BigInteger(mantissa) << (e - _exponent);
            _sum += x;
            _sumOfSquares += x * x;
        }
    }

    public int Count { get; }

    public double Sum => ToDouble(_sum, BigInteger.One, _exponent);

    public double Mean => ToDouble(_sum, Count, _exponent);

    /// <summary>M2 = sum of squared deviations = (n S2 - S1^2) / n, scaled by 2^(2e).</summary>
    public double M2 => ToDouble((Count * _sumOfSquares) - (_sum * _sum), Count, 2 * _exponent);

    public double PopulationVariance => ToDouble((Count * _sumOfSquares) - (_sum * _sum), (BigInteger)Count * Count, 2 * _exponent);

    public double SampleVariance => ToDouble((Count * _sumOfSquares) - (_sum * _sum), (BigInteger)Count * (Count - 1), 2 * _exponent);

    private static void Decompose(double value, out long mantissa, out int exponent)
    {
        long bits = BitConverter.DoubleToInt64Bits(value);
        bool negative = bits < 0;
        int rawExponent = (int)((bits >> 52) & 0x7FF);
        long fraction = bits & 0xFFFFFFFFFFFFFL;
        if (rawExponent == 0)
        {
            exponent = -1074;
        }
        else
        {
            fraction |= 1L << 52;
            exponent = rawExponent - 1075;
        }

        mantissa = negative ? -fraction : fraction;
    }

    /// <summary>numerator / denominator * 2^exponent, correctly rounded to about one ulp.</summary>
    private static double ToDouble(BigInteger numerator, BigInteger denominator, int exponent)
    {
        if (numerator.IsZero)
        {
            return 0;
        }

        int sign = numerator.Sign * denominator.Sign;
        numerator = BigInteger.Abs(numerator);
        denominator = BigInteger.Abs(denominator);
        // Scale so the integer quotient carries 64+ significant bits, then let double round it.
        long shift = 64 - ((long)numerator.GetBitLength() - (long)denominator.GetBitLength());
        BigInteger quotient = shift >= 0 ? (numerator << (int)shift) / denominator : numerator / (denominator << (int)-shift);
        return sign * Math.ScaleB((double)quotient, exponent - (int)shift);
    }
}
