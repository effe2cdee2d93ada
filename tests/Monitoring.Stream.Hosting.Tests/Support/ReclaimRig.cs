using Microsoft.Extensions.Time.Testing;
using Monitoring.Stream.Hosting.Instruments;
using Monitoring.Stream.Hosting.Queries;
using Monitoring.Stream.Model;
using Monitoring.Stream.Pipeline;

namespace Monitoring.Stream.Hosting.Tests.Support;

/// <summary>
/// A pipeline on a fake clock that reclaims quickly (1 s windows, series idle after 5 s of event time), a
/// recent-window index as its sink, a collector and the queries over it: the rig of the reclaim probes.
/// </summary>
internal class ReclaimRig : IAsyncDisposable
{
    public const long T0 = 1_800_000_000_000;

    private readonly DateTimeOffset _from;
    private readonly DateTimeOffset _to = DateTimeOffset.FromUnixTimeMilliseconds(T0 + 3_600_000);
    private readonly bool _drainAfterStep;

    /// <param name="source">The collector's source name, also the pipeline's instance.</param>
    /// <param name="shards">The shard count.</param>
    /// <param name="configure">Changes to the options before the pipeline starts.</param>
    /// <param name="lookBack">How far before <see cref="T0"/> the queries start.</param>
    /// <param name="retention">The index's retention (its default when null).</param>
    /// <param name="drainAfterStep">Whether <see cref="StepAsync"/> waits for the shards after moving the clock too.</param>
    public ReclaimRig(string source, int shards = 2, Action<MetricsPipelineOptions>? configure = null, TimeSpan? lookBack = null, TimeSpan? retention = null, bool drainAfterStep = false)
    {
        _from = DateTimeOffset.FromUnixTimeMilliseconds(T0) - (lookBack ?? TimeSpan.FromMinutes(10));
        _drainAfterStep = drainAfterStep;
        Time = new FakeTimeProvider(DateTimeOffset.FromUnixTimeMilliseconds(T0));
        Index = retention is TimeSpan r ? new RecentWindowIndex(new RecentWindowIndexOptions { Retention = r }) : new RecentWindowIndex();
        var options = new MetricsPipelineOptions
        {
            ShardCount = shards,
            TimeProvider = Time,
            Instance = source,
            WindowSize = TimeSpan.FromSeconds(1),
            SeriesIdleTimeout = TimeSpan.FromSeconds(5),
        };
        configure?.Invoke(options);
        Pipeline = new MetricsPipeline(options, [Index]);
        Pipeline.Start();
        Collector = new MetricsCollector(Pipeline, source);
        Queries = new MetricStatisticsService(Index, time: Time);
    }

    public FakeTimeProvider Time { get; }

    public RecentWindowIndex Index { get; }

    public MetricsPipeline Pipeline { get; }

    public MetricsCollector Collector { get; }

    public MetricStatisticsService Queries { get; }

    public long NowMs => Time.GetUtcNow().ToUnixTimeMilliseconds();

    /// <summary>Flushes the collector, waits for the shards, then moves the clock on.</summary>
    public async Task StepAsync(double seconds = 1)
    {
        Collector.Flush();
        await Pipeline.DrainAsync().WaitAsync(TimeSpan.FromSeconds(20));
        Time.Advance(TimeSpan.FromSeconds(seconds));
        if (_drainAfterStep)
        {
            await Pipeline.DrainAsync().WaitAsync(TimeSpan.FromSeconds(20));
        }
    }

    public async Task StopAsync()
    {
        Collector.Flush();
        await Pipeline.StopAsync().WaitAsync(TimeSpan.FromSeconds(20));
    }

    public MetricStatistics? Stats(string metric, params Label[] labels) =>
        Queries.GetStatistics(metric, LabelSet.Create(labels), _from, _to);

    public MetricStatistics? Matching(string metric, params Label[] labels) =>
        Queries.GetMatching(metric, LabelSet.Create(labels), _from, _to);

    public SourceMetrics Source(string name) => Pipeline.GetMetrics().Sources.Single(s => s.Source == name);

    public async ValueTask DisposeAsync()
    {
        Collector.Dispose();
        await Pipeline.DisposeAsync();
    }
}
