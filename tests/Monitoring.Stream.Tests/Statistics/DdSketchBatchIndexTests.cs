using Monitoring.Stream.Ingest;
using Monitoring.Stream.Statistics;

namespace Monitoring.Stream.Tests.Statistics;

/// <summary>
/// A shard computes a batch's bin indices with a vector logarithm; each must equal the scalar formula's
/// (<c>ceil(log |x| / log gamma)</c> with <see cref="Math.Log(double)"/>), or the same value would land in
/// another bin depending on the path that added it.
/// </summary>
public class DdSketchBatchIndexTests
{
    public static TheoryData<double> Accuracies => [DdSketch.MinRelativeAccuracy, 0.0007, 0.001, 0.005, 0.01, 0.02, 0.05, 0.1, DdSketch.MaxRelativeAccuracy];

    [Theory]
    [MemberData(nameof(Accuracies))]
    public void MagnitudeIndicesOf_ValuesAroundEveryBinBoundary_EqualTheScalarIndex(double alpha)
    {
        var sketch = new DdSketch(alpha);
        double logGamma = Math.Log((1 + alpha) / (1 - alpha));
        var values = new List<double>();
        // Every boundary gamma^i from the smallest indexable magnitude to the largest double (at the finest
        // accuracies every 97th or 7th of about 3.6 million or 500,000 bins), 12 ulps either side of the computed power.
        int lowest = (int)Math.Floor(Math.Log(sketch.MinIndexableValue) / logGamma);
        int highest = (int)Math.Ceiling(Math.Log(double.MaxValue) / logGamma);
        int step = alpha < 1e-4 ? 97 : alpha < 0.001 ? 7 : 1;
        for (int i = lowest; i <= highest; i += step)
        {
            double boundary = Math.Exp(i * logGamma);
            if (!double.IsFinite(boundary) || boundary == 0)
            {
                continue;
            }

            double v = boundary;
            for (int u = 0; u < 12; u++)
            {
                v = Math.BitDecrement(v);
            }

            for (int u = 0; u < 25; u++, v = Math.BitIncrement(v))
            {
                values.Add((u & 1) == 0 ? v : -v);
            }
        }

        AssertEqualToScalar(sketch, values);
    }

    [Theory]
    [MemberData(nameof(Accuracies))]
    public void MagnitudeIndicesOf_RandomDoublesOfEveryMagnitudeAndTheEdges_EqualTheScalarIndex(double alpha)
    {
        var sketch = new DdSketch(alpha);
        var random = new Random(20261130);
        var values = new List<double>
        {
            0, -0.0, double.Epsilon, -double.Epsilon, 2.2250738585072014E-308, double.MaxValue, -double.MaxValue,
            1, -1, Math.BitIncrement(1.0), Math.BitDecrement(1.0),
            sketch.MinIndexableValue, -sketch.MinIndexableValue,
            Math.BitIncrement(sketch.MinIndexableValue), Math.BitDecrement(sketch.MinIndexableValue),
            -Math.BitIncrement(sketch.MinIndexableValue),
        };
        for (int i = 0; i < 200_000; i++)
        {
            // Random bits: every exponent (subnormals included) equally likely, both signs; no NaN or infinity.
            double v = BitConverter.Int64BitsToDouble(random.NextInt64());
            values.Add(double.IsFinite(v) ? v : random.NextDouble());
        }

        for (int i = 0; i < 50_000; i++)
        {
            values.Add(Math.Exp(random.NextDouble() * 20 - 5)); // latency-like
        }

        // Lengths that leave a remainder after the four-value steps.
        for (int tail = 0; tail < 4; tail++)
        {
            AssertEqualToScalar(sketch, values.GetRange(0, values.Count - tail));
        }
    }

    [Fact]
    public void MagnitudeIndicesOf_NoPointsAndNoRoom_WritesNothing()
    {
        // A shard's batch can carry no point (a flush that only reports progress) before its index array grew.
        new DdSketch().MagnitudeIndicesOf([], []);
        int[] indices = [7, 7];
        new DdSketch().MagnitudeIndicesOf([], indices);
        Assert.Equal([7, 7], indices);
    }

    [Fact]
    public void MagnitudeIndicesOf_IndexSpanShorterThanThePoints_Throws()
    {
        var sketch = new DdSketch();
        var points = new IngestPoint[5];
        Assert.Throws<ArgumentException>(() => sketch.MagnitudeIndicesOf(points, new int[4]));
    }

    private static void AssertEqualToScalar(DdSketch sketch, List<double> values)
    {
        var points = new IngestPoint[values.Count];
        for (int i = 0; i < points.Length; i++)
        {
            points[i] = new IngestPoint { Slot = i, Value = values[i], TimestampUnixMs = i };
        }

        var indices = new int[points.Length];
        sketch.MagnitudeIndicesOf(points, indices);
        int differing = 0;
        string? first = null;
        for (int i = 0; i < points.Length; i++)
        {
            int expected = sketch.MagnitudeIndexOf(values[i]);
            if (indices[i] != expected)
            {
                differing++;
                first ??= $"value {values[i]:R} ({BitConverter.DoubleToInt64Bits(values[i]):X16}): {indices[i]} instead of {expected}";
            }
        }

        Assert.True(differing == 0, $"{differing} of {points.Length} indices differ from the scalar formula; first: {first}");
    }
}
