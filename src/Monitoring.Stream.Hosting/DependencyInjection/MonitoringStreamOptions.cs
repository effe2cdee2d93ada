using Monitoring.Stream.Hosting.Bridge;
using Monitoring.Stream.Hosting.Health;
using Monitoring.Stream.Hosting.Http;
using Monitoring.Stream.Hosting.Monitors;
using Monitoring.Stream.Hosting.Queries;
using Monitoring.Stream.Pipeline;
using Monitoring.Stream.Sinks;
using Monitoring.Stream.Store;

namespace Monitoring.Stream.Hosting.DependencyInjection;

/// <summary>Everything <c>AddMonitoringStream</c> sets up, bound from the <c>MonitoringStream</c> configuration section.</summary>
public sealed class MonitoringStreamOptions
{
    /// <summary>The configuration section bound by default.</summary>
    public const string SectionName = "MonitoringStream";

    /// <summary>The engine: shards, windows, lateness, queues, sketches.</summary>
    public MetricsPipelineOptions Pipeline { get; } = new();

    /// <summary>Queue and retry settings of every sink.</summary>
    public SinkOptions Sinks { get; } = new();

    /// <summary>Whether closed windows are kept in the local Arrow store (default true); queries reach back as far as it keeps files.</summary>
    public bool ArrowStoreEnabled { get; set; } = true;

    /// <summary>The local Arrow store.</summary>
    public ArrowFileStoreOptions ArrowStore { get; } = new();

    /// <summary>Recent windows kept in memory for queries.</summary>
    public RecentWindowIndexOptions RecentWindows { get; } = new();

    /// <summary>Meters of the application fed into the engine.</summary>
    public MeterBridgeOptions Bridge { get; } = new();

    /// <summary>Whether the performance monitor runs (default true).</summary>
    public bool SystemMetricsEnabled { get; set; } = true;

    /// <summary>The performance monitor.</summary>
    public SystemMetricsOptions SystemMetrics { get; } = new();

    /// <summary>Thresholds of the engine's own health check.</summary>
    public EngineHealthOptions Health { get; } = new();

    /// <summary>The HTTP request metrics.</summary>
    public HttpMetricsOptions Http { get; } = new();

    /// <summary>How often the engine's self-metrics are recorded into the engine (default 10 s).</summary>
    public TimeSpan SelfMetricsInterval { get; set; } = TimeSpan.FromSeconds(10);

    /// <summary>The source name the application's instruments are counted under (default <c>sdk</c>).</summary>
    public string Source { get; set; } = "sdk";
}
