using Monitoring.Stream.Ingest;
using Monitoring.Stream.Model;
using Monitoring.Stream.Pipeline;
using Monitoring.Stream.Statistics;
using Monitoring.Stream.Tests.Hardening;
using Monitoring.Stream.Tests.Support;

namespace Monitoring.Stream.Tests.BlackBox;

/// <summary>
/// Probe 7: values through the whole pipeline, from docs/statistics.md ("Value range": magnitudes above 1e100 refused
/// as ValueOutOfRange, NaN and infinities under their own reasons; count, sum, min, max exact; mean and variance from
/// shifted Welford) and its "Mapping" and "Quantile sketch" sections: the window's sketch is the DDSketch of its values,
/// so the emitted sketch and quantiles must equal those of a <see cref="DdSketch"/> filled through its public
/// <see cref="DdSketch.Add"/> with the same parameters (the shard computes its batches' bin indices with a vectorized
/// logarithm; Add uses the scalar formula), and within the relative accuracy of the exact rank value where no bin
/// was collapsed.
/// </summary>
public class ValuesProbe7BlackBoxTests
{
    private static readonly double[] s_quantiles = [0.5, 0.9, 0.95, 0.99];

    private static async Task<(IReadOnlyList<WindowRow> Rows, PipelineMetrics Metrics, Dictionary<RejectReason, int> Told)> RunAsync(
        IReadOnlyList<double> values, double alpha = DdSketch.DefaultRelativeAccuracy, int maxBins = DdSketch.DefaultMaxBinsPerSign)
    {
        var time = Scenario.Clock(Scenario.T0);
        MetricsPipelineOptions options = EventTimeBlackBoxTests.Options(time, shards: 1, windowMs: 60_000, latenessMs: 0, idleMs: 600_000);
        options.BatchSize = 256;
        options.ShardQueueBatches = 64;
        options.SketchRelativeAccuracy = alpha;
        options.SketchMaxBins = maxBins;
        var sink = new CollectingSink();
        await using var pipeline = new MetricsPipeline(options, [sink]);
        pipeline.Start();
        SeriesId id = pipeline.Registry.GetOrAdd("p7_values", [new Label("k", "v")]);
        var told = new Dictionary<RejectReason, int>();
        using (PointWriter writer = pipeline.CreateWriter("values", BackpressureMode.Wait))
        {
            for (int i = 0; i < values.Count; i++)
            {
                RejectReason r = writer.Write(id, values[i], Scenario.T0 + (i % 50_000));
                told[r] = told.GetValueOrDefault(r) + 1;
            }
        }

        await pipeline.StopAsync().Within("the stop");
        PipelineMetrics m = pipeline.GetMetrics();
        BlackBoxAccounting.AssertStoppedGracefully(m);
        Assert.Equal(0, m.Late);
        return (sink.Rows, m, told);
    }

    private static DdSketch Reference(IEnumerable<double> values, double alpha, int maxBins)
    {
        var sketch = new DdSketch(alpha, maxBins);
        foreach (double v in values)
        {
            sketch.Add(v);
        }

        return sketch;
    }

    private static void AssertSketchAsAdd(WindowRow row, IReadOnlyList<double> accepted, double alpha, int maxBins)
    {
        DdSketch reference = Reference(accepted, alpha, maxBins);
        Assert.NotNull(row.Sketch);
        Assert.True(reference.ContentEquals(row.Sketch), "the emitted sketch differs from the sketch Add builds from the same values");
        double[] expected = new double[s_quantiles.Length];
        reference.GetQuantiles(s_quantiles, expected);
        for (int q = 0; q < s_quantiles.Length; q++)
        {
            Assert.True(BitConverter.DoubleToInt64Bits(expected[q]) == BitConverter.DoubleToInt64Bits(row.Quantiles[q]!.Value), $"p{s_quantiles[q] * 100}: emitted {row.Quantiles[q]:R}, Add's sketch {expected[q]:R}");
        }
    }

    [Fact]
    public async Task Window_ExtremesSubnormalsSignedZerosAndRefusedValues_CountSumMinMaxExactMomentsCloseRefusalsByReason()
    {
        double[] written =
        [
            1e100, -1e100, 1e100, 1, -1e100, double.Epsilon, -double.Epsilon, -0.0, 0.0, 2.2250738585072014E-308,
            1e-300, -1e-300, 3, Math.BitDecrement(1e100), -Math.BitDecrement(1e100), 0.1, 1e99, -7.5,
            double.MaxValue, -double.MaxValue, Math.BitIncrement(1e100), -Math.BitIncrement(1e100), double.NaN,
            double.PositiveInfinity, double.NegativeInfinity, 1e101,
        ];
        (IReadOnlyList<WindowRow> rows, PipelineMetrics m, Dictionary<RejectReason, int> told) = await RunAsync(written);

        Assert.Equal(5, told[RejectReason.ValueOutOfRange]);
        Assert.Equal(1, told[RejectReason.NotANumber]);
        Assert.Equal(2, told[RejectReason.Infinity]);
        Assert.Equal(5, m.RejectedByReason[RejectReason.ValueOutOfRange]);
        Assert.Equal(1, m.RejectedByReason[RejectReason.NotANumber]);
        Assert.Equal(2, m.RejectedByReason[RejectReason.Infinity]);
        double[] accepted = [.. written.Where(PointValidator.IsAccepted)];
        Assert.Equal(told[RejectReason.None], accepted.Length);
        WindowRow row = Assert.Single(rows);
        var exact = new ExactMoments(accepted);
        Assert.Equal(accepted.Length, row.Count);
        // The exact sum is 1e99 (as a double) + 1 + 3 + 0.1 - 7.5 + terms below 1e-299: 3.4 below that double, far less
        // than half its ulp (1.4e83), so the correctly rounded sum is that double. (ExactMoments.Sum is correct to about
        // one ulp, as its doc says: here one below.)
        Assert.Equal(1e99, row.Sum);
        Assert.True(Math.Abs(exact.Sum - row.Sum) <= Math.BitIncrement(1e99) - 1e99, $"sum {row.Sum:R}, exact {exact.Sum:R}");
        Assert.Equal(accepted.Min(), row.Min);
        Assert.Equal(accepted.Max(), row.Max);
        double scale = 1e100;
        Assert.True(Math.Abs(row.Mean - exact.Mean) <= 1e-12 * scale, $"mean {row.Mean:R}, exact {exact.Mean:R}");
        Assert.True(double.IsFinite(row.M2) && Math.Abs(row.M2 - exact.M2) <= 1e-12 * exact.M2, $"m2 {row.M2:R}, exact {exact.M2:R}");
        Assert.True(Math.Abs(row.Variance - exact.PopulationVariance) <= 1e-12 * exact.PopulationVariance, $"variance {row.Variance:R}, exact {exact.PopulationVariance:R}");
        Assert.Equal(accepted[^1], row.Last);
        AssertSketchAsAdd(row, accepted, DdSketch.DefaultRelativeAccuracy, DdSketch.DefaultMaxBinsPerSign);
    }

    public static TheoryData<double, int> SketchSettings => new()
    {
        { 0.01, DdSketch.DefaultMaxBinsPerSign },
        { 0.01, DdSketch.MaxMaxBins },
        { 0.0007, DdSketch.MaxMaxBins },
        { 0.05, 64 },
        { DdSketch.MinRelativeAccuracy, DdSketch.MaxMaxBins },
    };

    /// <summary>Log-uniform magnitudes from 1e-300 to 1e100 (the accepted range), both signs, in shuffled order.</summary>
    [Theory]
    [MemberData(nameof(SketchSettings))]
    public async Task Window_ValuesSpanning1eMinus300To1e100_EmittedSketchEqualsAddsAndQuantilesWithinAccuracy(double alpha, int maxBins)
    {
        var random = new Random(7_300 + maxBins);
        double[] values = [.. Enumerable.Range(0, 20_000).Select(i =>
        {
            double magnitude = Math.Pow(10, -300 + (random.NextDouble() * 400));
            return i % 5 == 0 ? -magnitude : magnitude;
        })];
        (IReadOnlyList<WindowRow> rows, _, Dictionary<RejectReason, int> told) = await RunAsync(values, alpha, maxBins);
        Assert.Equal(values.Length, told[RejectReason.None]);
        WindowRow row = Assert.Single(rows);
        AssertSketchAsAdd(row, values, alpha, maxBins);
        double lnGamma = Math.Log((1 + alpha) / (1 - alpha));
        double span = (Math.Log(values.Max(Math.Abs)) - Math.Log(values.Min(Math.Abs))) / lnGamma;
        if (span + 2 < maxBins)
        {
            // No bin collapsed (the occupied range of each sign fits the limit): the guarantee holds at every rank.
            double[] sorted = [.. values.Order()];
            for (int q = 0; q < s_quantiles.Length; q++)
            {
                double exact = sorted[(int)Math.Floor(s_quantiles[q] * (sorted.Length - 1))];
                Assert.True(Math.Abs(row.Quantiles[q]!.Value - exact) <= alpha * (1 + 1e-9) * Math.Abs(exact), $"p{s_quantiles[q] * 100}: {row.Quantiles[q]:R}, exact {exact:R}");
            }
        }
    }

    /// <summary>Values exactly at γ^i (as Math.Pow computes them) and their neighbouring doubles: every bin boundary.</summary>
    [Theory]
    [InlineData(0.01)]
    [InlineData(0.0007)]
    [InlineData(0.05)]
    [InlineData(DdSketch.MinRelativeAccuracy)]
    public async Task Window_ValuesAtPowersOfGammaAndTheirNeighbours_EmittedSketchEqualsAdds(double alpha)
    {
        double gamma = (1 + alpha) / (1 - alpha);
        double lnGamma = Math.Log(gamma);
        int low = (int)Math.Ceiling(Math.Log(1e-300) / lnGamma);
        int high = (int)Math.Floor(Math.Log(1e100) / lnGamma);
        int step = Math.Max(1, (high - low) / 4_000);
        var values = new List<double>();
        for (int i = low; i <= high; i += step)
        {
            double x = Math.Pow(gamma, i);
            values.AddRange([x, Math.BitDecrement(x), Math.BitIncrement(x), -x]);
        }

        (IReadOnlyList<WindowRow> rows, _, Dictionary<RejectReason, int> told) = await RunAsync(values, alpha, DdSketch.MaxMaxBins);
        Assert.Equal(values.Count, told[RejectReason.None]);
        AssertSketchAsAdd(Assert.Single(rows), values, alpha, DdSketch.MaxMaxBins);
    }

    [Fact]
    public async Task Window_TwoMillionPointsInOneSeries_CountSumMinMaxMeanExactSketchCountsEveryPoint()
    {
        const int N = 2_000_000;
        double[] values = [.. Enumerable.Range(0, N).Select(i => (double)(i % 1000) + 1)];
        (IReadOnlyList<WindowRow> rows, PipelineMetrics m, _) = await RunAsync(values);
        WindowRow row = Assert.Single(rows);
        Assert.Equal(N, m.EmittedPoints);
        Assert.Equal(N, row.Count);
        Assert.Equal(N / 1000 * 500_500.0, row.Sum);
        Assert.Equal(1, row.Min);
        Assert.Equal(1000, row.Max);
        // The mean is shifted Welford's (docs/statistics.md), not sum / count: seen 500.50000000000989 here, 2e-14 relative.
        Assert.True(Math.Abs(row.Mean - 500.5) <= 1e-12 * 500.5, $"mean {row.Mean:R}");
        double exactVariance = ((1000.0 * 1000.0) - 1) / 12;
        Assert.True(Math.Abs(row.Variance - exactVariance) <= 1e-9 * exactVariance, $"variance {row.Variance:R}, exact {exactVariance:R}");
        Assert.Equal((ulong)N, row.Sketch!.Count);
        AssertSketchAsAdd(row, values, DdSketch.DefaultRelativeAccuracy, DdSketch.DefaultMaxBinsPerSign);
    }
}
