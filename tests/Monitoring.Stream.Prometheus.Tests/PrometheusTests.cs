using Monitoring.Stream.Prometheus.Tests.Support;

namespace Monitoring.Stream.Prometheus.Tests;

/// <summary>The sink against a real Prometheus from Debian's package (remote-write receiver on), started per test on a free loopback port.</summary>
public sealed class PrometheusTests
{
    private const int Series = 1000;
    private const int Windows = 6;
    private const int PointsPerWindow = 5;
    private static readonly TimeSpan s_wait = TimeSpan.FromSeconds(60);

    [Fact]
    public async Task Query_1000SeriesOverSixWindows_HoldsExactlyTheEngineValues()
    {
        await using DatabaseProcess prometheus = await DatabaseProcess.StartPrometheusAsync();
        await using var sink = new RemoteWriteSink(new RemoteWriteSinkOptions { Endpoint = prometheus.WriteUri, MaxRequestBytes = 256 * 1024 });

        RowCollectingSink engine = await PipelineDriver.RunAsync(sink, Series, Windows, PointsPerWindow, PipelineDriver.WindowStartBeforeNow(Windows + 3));

        Assert.Equal(0, sink.SamplesDropped);
        Dictionary<string, List<(long TimestampMs, double Value)>> expected = ExpectedSeries.From(engine.Rows);
        int expectedSamples = ReceiverQueries.SampleCount(expected);
        Assert.Equal(Series * Windows * 11, expectedSamples);
        Assert.Equal(expectedSamples, sink.SamplesSent);
        long lastWindowEnd = engine.Rows.Max(r => r.WindowEndMs);
        Dictionary<string, List<(long TimestampMs, double Value)>> stored = [];
        await PipelineDriver.WaitUntilAsync(() =>
        {
            stored = ReceiverQueries.RangeQueryAsync(prometheus, "{__name__=~\"test_.*\"}", "5m", lastWindowEnd).GetAwaiter().GetResult();
            return ReceiverQueries.SampleCount(stored) >= expectedSamples;
        }, s_wait, () => $"{ReceiverQueries.SampleCount(stored)} of {expectedSamples} samples queried");

        // Prometheus keeps float64 samples as they are: every value bit for bit.
        RemoteWriteSinkTests.AssertSeriesEqual(expected, stored);
    }

    [Fact]
    public async Task Rate_OfCountOverTheRun_IsThePointsPerSecondWritten()
    {
        await using DatabaseProcess prometheus = await DatabaseProcess.StartPrometheusAsync();
        await using var sink = new RemoteWriteSink(new RemoteWriteSinkOptions { Endpoint = prometheus.WriteUri });

        RowCollectingSink engine = await PipelineDriver.RunAsync(sink, Series, Windows, PointsPerWindow, PipelineDriver.WindowStartBeforeNow(Windows + 3));

        await VictoriaMetricsTests.AssertRateAsync(prometheus, engine, engine.Rows.Max(r => r.WindowEndMs), extrapolates: true);
    }
}
