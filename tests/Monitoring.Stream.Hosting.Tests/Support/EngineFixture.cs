using Microsoft.Extensions.Time.Testing;
using Monitoring.Stream.Hosting.Instruments;
using Monitoring.Stream.Hosting.Queries;
using Monitoring.Stream.Pipeline;
using Monitoring.Stream.Sinks;
using Monitoring.Stream.Store;

namespace Monitoring.Stream.Hosting.Tests.Support;

/// <summary>A pipeline on a fake clock with the in-memory index, an optional Arrow store, a collector and the query service.</summary>
internal sealed class EngineFixture : IAsyncDisposable
{
    public const long T0 = 1_800_000_000_000;

    public EngineFixture(long nowUnixMs = T0, TimeSpan? indexRetention = null, string? storeDirectory = null, int shards = 2, IEnumerable<IWindowSink>? extraSinks = null, SinkOptions? sinkOptions = null)
    {
        Time = new FakeTimeProvider(DateTimeOffset.FromUnixTimeMilliseconds(nowUnixMs));
        Index = new RecentWindowIndex(new RecentWindowIndexOptions { Retention = indexRetention ?? TimeSpan.FromMinutes(15) });
        var sinks = new List<IWindowSink> { Index };
        if (storeDirectory is not null)
        {
            Store = new ArrowFileStore(new ArrowFileStoreOptions { Directory = storeDirectory, MaxFileAge = TimeSpan.FromSeconds(30) }, Time);
            sinks.Add(Store);
        }

        sinks.AddRange(extraSinks ?? []);
        Pipeline = new MetricsPipeline(new MetricsPipelineOptions { ShardCount = shards, TimeProvider = Time, Instance = "test" }, sinks, sinkOptions);
        Pipeline.Start();
        Collector = new MetricsCollector(Pipeline, "test-sdk");
        Queries = Store is null ? new MetricStatisticsService(Index, arrowStoreDirectory: null, Time) : new MetricStatisticsService(Index, Store, Time);
    }

    public FakeTimeProvider Time { get; }

    public RecentWindowIndex Index { get; }

    public ArrowFileStore? Store { get; }

    public MetricsPipeline Pipeline { get; }

    public MetricsCollector Collector { get; }

    public MetricStatisticsService Queries { get; }

    /// <summary>Flushes the collector and stops the pipeline gracefully, so every window reaches every sink.</summary>
    public async Task StopAsync()
    {
        Collector.Flush();
        using var timeout = new CancellationTokenSource(TimeSpan.FromSeconds(30));
        await Pipeline.StopAsync(timeout.Token);
    }

    /// <summary>
    /// Stops the pipeline, moving the fake clock while the stop waits: on this clock a sink's retry backoff and the stop's
    /// own deadline fire only when a test moves time, and a test that ends with a sink in backoff (a timed-out attempt
    /// after a clock jump) left the stop waiting for ever (one CI run: the test host idle for 10 minutes). Bounded: a
    /// stop that has not ended after 10 minutes of fake time (about 6 s of real time) fails the test.
    /// </summary>
    public async ValueTask DisposeAsync()
    {
        Collector.Dispose();
        Task stop = Pipeline.StopAsync();
        for (int step = 0; step < 600 && !stop.IsCompleted; step++)
        {
            await Task.WhenAny(stop, Task.Delay(10));
            if (!stop.IsCompleted)
            {
                Time.Advance(TimeSpan.FromSeconds(1));
            }
        }

        if (!stop.IsCompleted)
        {
            throw new TimeoutException("The pipeline did not stop within 10 minutes of fake time while the fixture was disposed.");
        }

        await stop;
        await Pipeline.DisposeAsync();
    }
}
