using Monitoring.Stream.Prometheus.Tests.Support;

namespace Monitoring.Stream.Prometheus.Tests;

/// <summary>The sink against a real VictoriaMetrics from Debian's package, started per test on a free loopback port.</summary>
public sealed class VictoriaMetricsTests
{
    private const int Series = 1000;
    private const int Windows = 6;
    private const int PointsPerWindow = 5;
    private static readonly TimeSpan s_wait = TimeSpan.FromSeconds(60);

    private static RemoteWriteSinkOptions Options(Uri endpoint) => new()
    {
        Endpoint = endpoint,
        MaxRequestBytes = 256 * 1024,
        MinBackoff = TimeSpan.FromMilliseconds(20),
        MaxBackoff = TimeSpan.FromMilliseconds(200),
        Timeout = TimeSpan.FromSeconds(10),
    };

    [Fact]
    public async Task Export_1000SeriesOverSixWindows_HoldsExactlyTheEngineValues()
    {
        await using DatabaseProcess vm = await DatabaseProcess.StartVictoriaMetricsAsync();
        await using var sink = new RemoteWriteSink(Options(vm.WriteUri));

        RowCollectingSink engine = await PipelineDriver.RunAsync(sink, Series, Windows, PointsPerWindow, PipelineDriver.WindowStartBeforeNow(Windows + 3));

        Assert.Equal(Series * Windows, engine.Rows.Count);
        Dictionary<string, List<(long TimestampMs, double Value)>> expected = ExpectedSeries.From(engine.Rows);
        int expectedSamples = ReceiverQueries.SampleCount(expected);
        Assert.Equal(Series * Windows * 11, expectedSamples);
        Assert.Equal(expectedSamples, sink.SamplesSent);
        Dictionary<string, List<(long TimestampMs, double Value)>> stored = [];
        await PipelineDriver.WaitUntilAsync(() =>
        {
            stored = ReceiverQueries.ExportAsync(vm, "{__name__=~\"test_.*\"}").GetAwaiter().GetResult();
            return ReceiverQueries.SampleCount(stored) >= expectedSamples;
        }, s_wait, () => $"{ReceiverQueries.SampleCount(stored)} of {expectedSamples} samples exported");

        // VictoriaMetrics stores a float as a decimal mantissa and exponent of about 12 significant digits, so the
        // values read back are the engine's to 1e-12 relative; timestamps, series and counts are exact. The same run
        // against Prometheus (PrometheusTests) is compared bit for bit.
        RemoteWriteSinkTests.AssertSeriesEqual(expected, stored, relativeTolerance: 1e-12);
        Assert.All(stored.Where(s => s.Key.StartsWith("test_latency_seconds_count", StringComparison.Ordinal)).SelectMany(s => s.Value),
            s => Assert.Equal(Math.Round(s.Value), s.Value));
    }

    [Fact]
    public async Task Rate_OfCountOverTheRun_IsThePointsPerSecondWritten()
    {
        await using DatabaseProcess vm = await DatabaseProcess.StartVictoriaMetricsAsync();
        await using var sink = new RemoteWriteSink(Options(vm.WriteUri));

        RowCollectingSink engine = await PipelineDriver.RunAsync(sink, Series, Windows, PointsPerWindow, PipelineDriver.WindowStartBeforeNow(Windows + 3));

        long lastWindowEnd = engine.Rows.Max(r => r.WindowEndMs);
        await AssertRateAsync(vm, engine, lastWindowEnd, extrapolates: false);
    }

    /// <summary>
    /// sum(rate(test_latency_seconds_count[45s])) at the last window end spans the last four 10 s windows, so it must
    /// equal the latency points the run wrote in them per second (the count is constant per window here).
    /// </summary>
    internal static async Task AssertRateAsync(DatabaseProcess db, RowCollectingSink engine, long lastWindowEnd, bool extrapolates)
    {
        long pointsInLastFour = engine.Rows.Where(r => r.Metric == PipelineDriver.LatencyMetric && r.WindowEndMs > lastWindowEnd - 40_000).Sum(r => r.Count);
        double expected = pointsInLastFour / 40.0;
        Assert.Equal(Series * 4 / 5 * PointsPerWindow / 10.0, expected);
        double? rate = null;
        await PipelineDriver.WaitUntilAsync(() =>
        {
            rate = ReceiverQueries.ScalarQueryAsync(db, "sum(rate(test_latency_seconds_count[45s]))", lastWindowEnd).GetAwaiter().GetResult();
            return rate is not null && Math.Abs(rate.Value - expected) <= 1e-9 * expected;
        }, s_wait, () => $"rate {rate}, expected {expected} points/s");

        // And per series, increase() over the same range. Prometheus takes the samples inside the 45 s (the last four
        // window ends, 40 s apart) and extrapolates their difference to 45 s; VictoriaMetrics starts from the sample
        // just before the range, so it counts the points of the last five windows, exactly.
        CollectedRow one = engine.Rows.First(r => r.Metric == PipelineDriver.LatencyMetric);
        string route = one.Labels.First(l => l.Key == "route").Value;
        long Points(long spanMs) => engine.Rows.Where(r => r.Metric == one.Metric && r.Labels.SequenceEqual(one.Labels) && r.WindowEndMs > lastWindowEnd - spanMs).Sum(r => r.Count);
        double? increase = await ReceiverQueries.ScalarQueryAsync(db, $"sum(increase(test_latency_seconds_count{{route=\"{route}\"}}[45s]))", lastWindowEnd);
        Assert.NotNull(increase);
        Assert.Equal(extrapolates ? Points(40_000) * 45.0 / 40.0 : Points(50_000), increase.Value, 1e-9);
    }

    [Fact]
    public async Task Outage_OfSeveralWindows_DeliversEveryWindowInOrderOnceBack()
    {
        await using DatabaseProcess vm = await DatabaseProcess.StartVictoriaMetricsAsync();
        RemoteWriteSinkOptions options = Options(vm.WriteUri);
        options.QueueCapacity = 64;
        await using var sink = new RemoteWriteSink(options);
        const int series = 200;
        const int windows = 8;
        long perWindow = series * 11;
        bool sawRetrying = false;

        RowCollectingSink engine = await PipelineDriver.RunAsync(sink, series, windows, pointsPerWindow: 2, PipelineDriver.WindowStartBeforeNow(windows + 3),
            afterWindowClosed: async w =>
            {
                await PipelineDriver.WaitUntilAsync(() => sink.SamplesEncoded >= (w + 1) * perWindow, s_wait, () => $"window {w} encoded");
                if (w == 0)
                {
                    // Window 0 reached the database; then it goes away for windows 1..5.
                    await PipelineDriver.WaitUntilAsync(() => sink.SamplesSent == perWindow, s_wait, () => $"sent {sink.SamplesSent}");
                    await vm.StopAsync(graceful: true);
                }
                else if (w == 5)
                {
                    Assert.Equal(perWindow, sink.SamplesSent);
                    await PipelineDriver.WaitUntilAsync(() => sink.RequestsRetried > 0, s_wait, () => "a retry");
                    sawRetrying = sink.State == RemoteWriteSinkState.Retrying;
                    Assert.True(sink.QueuedSamples > 0);
                    await vm.StartAsync();
                }
            });

        Assert.True(sawRetrying);
        Assert.Equal(windows * perWindow, sink.SamplesSent);
        Assert.Equal(0, sink.SamplesDropped);
        Assert.Equal(RemoteWriteSinkState.Ok, sink.State);
        Dictionary<string, List<(long TimestampMs, double Value)>> expected = ExpectedSeries.From(engine.Rows);
        Dictionary<string, List<(long TimestampMs, double Value)>> stored = [];
        await PipelineDriver.WaitUntilAsync(() =>
        {
            stored = ReceiverQueries.ExportAsync(vm, "{__name__=~\"test_.*\"}").GetAwaiter().GetResult();
            return ReceiverQueries.SampleCount(stored) >= windows * perWindow;
        }, s_wait, () => $"{ReceiverQueries.SampleCount(stored)} of {windows * perWindow} samples exported");

        // Every window of every series, each series in timestamp order, cumulative counts never going back.
        RemoteWriteSinkTests.AssertSeriesEqual(expected, stored, relativeTolerance: 1e-12);
        Assert.All(stored, s => Assert.Equal(windows, s.Value.Count));
    }
}
