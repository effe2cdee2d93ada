using Microsoft.Extensions.Diagnostics.HealthChecks;
using Monitoring.Stream.Hosting.Health;
using Monitoring.Stream.Hosting.Http;
using Monitoring.Stream.Hosting.Monitors;
using Monitoring.Stream.Hosting.Queries;
using Monitoring.Stream.Model;
using Monitoring.Stream.Pipeline;

namespace Monitoring.Stream.Hosting.Dashboard;

/// <summary>
/// Gathers, for one window (default one hour), health, host figures, HTTP requests, document
/// processing and the engine's own figures into one <see cref="DashboardData"/>, every statistic merged
/// from the engine's window aggregates.
/// </summary>
public sealed class DashboardDataService
{
    /// <summary>The default window.</summary>
    public static readonly TimeSpan DefaultWindow = TimeSpan.FromHours(1);

    private readonly MetricStatisticsService _queries;
    private readonly MetricsPipeline _pipeline;
    private readonly HealthCheckService? _health;
    private readonly HealthMetricsPublisher? _publisher;
    private readonly TimeProvider _time;
    private readonly EngineHealthCheck? _engineHealth;

    /// <summary>Creates the service; without <paramref name="health"/> the health section is null.</summary>
    /// <param name="queries">The statistics queries.</param>
    /// <param name="pipeline">The engine.</param>
    /// <param name="health">The health checks to run for the health section.</param>
    /// <param name="publisher">Records each health report as metrics.</param>
    /// <param name="time">The clock (default: the pipeline's).</param>
    /// <param name="engineHealth">
    /// The engine's health check among <paramref name="health"/>'s: when given, each sink's state is the one that
    /// check worked out (a sink with windows pending and no progress is stalled), so the page and /health agree.
    /// </param>
    public DashboardDataService(MetricStatisticsService queries, MetricsPipeline pipeline, HealthCheckService? health = null, HealthMetricsPublisher? publisher = null, TimeProvider? time = null, EngineHealthCheck? engineHealth = null)
    {
        ArgumentNullException.ThrowIfNull(queries);
        ArgumentNullException.ThrowIfNull(pipeline);
        _queries = queries;
        _pipeline = pipeline;
        _health = health;
        _publisher = publisher;
        _time = time ?? pipeline.Options.TimeProvider;
        _engineHealth = engineHealth;
    }

    /// <summary>Gathers the dashboard data for the last <paramref name="window"/> (default one hour); runs the health checks now.</summary>
    public async Task<DashboardData> GetAsync(TimeSpan? window = null, CancellationToken cancellationToken = default)
    {
        TimeSpan span = window ?? DefaultWindow;
        ArgumentOutOfRangeException.ThrowIfLessThanOrEqual(span, TimeSpan.Zero, nameof(window));
        DateTimeOffset to = _time.GetUtcNow();

        // A window reaching back before year 1 (?minutes=2147483647, TimeSpan.MaxValue) starts at the earliest time
        // rather than failing in DateTimeOffset's arithmetic (the endpoint answered 500).
        if (span > to - DateTimeOffset.MinValue)
        {
            span = to - DateTimeOffset.MinValue;
        }

        DateTimeOffset from = to - span;
        HealthData? health = null;
        if (_health is not null)
        {
            HealthReport report = await _health.CheckHealthAsync(cancellationToken).ConfigureAwait(false);
            if (_publisher is not null)
            {
                await _publisher.PublishAsync(report, cancellationToken).ConfigureAwait(false);
            }

            health = new HealthData(report.Status.ToString(), [.. report.Entries.OrderBy(e => e.Key, StringComparer.Ordinal).Select(e =>
                new HealthCheckData(e.Key, e.Value.Status.ToString(), e.Value.Description, e.Value.Exception?.Message, e.Value.Duration.TotalMilliseconds))]);
        }

        // The engine check's verdict per sink, when it just ran: the same state /health reports.
        Dictionary<string, SinkHealth>? judged = health is not null && _engineHealth is not null
            ? _engineHealth.LastSinkStates.ToDictionary(s => s.Name, StringComparer.Ordinal)
            : null;
        return new DashboardData(to, span.TotalSeconds, from, to, health, System(from, to), Requests(from, to, span), Documents(from, to), Engine(from, to, judged));
    }

    private StatSummary? Stat(string metric, DateTimeOffset from, DateTimeOffset to) =>
        StatSummary.From(_queries.GetMatching(metric, LabelSet.Empty, from, to));

    private SystemData System(DateTimeOffset from, DateTimeOffset to) => new(
        Stat("system_cpu_usage_percent", from, to),
        Stat("process_cpu_usage_percent", from, to),
        Stat("system_memory_usage_percent", from, to),
        Stat("system_memory_used_bytes", from, to),
        Stat("process_working_set_bytes", from, to),
        Stat("process_gc_heap_bytes", from, to),
        [.. _queries.GetGrouped("system_disk_usage_percent", LabelSet.Empty, ["mount"], from, to)
            .Select(g => new DiskData(g.Group.GetValue("mount") ?? string.Empty, StatSummary.From(g.Statistics)))]);

    private RequestData Requests(DateTimeOffset from, DateTimeOffset to, TimeSpan span)
    {
        const string Metric = HttpRequestMetrics.DurationMetric;
        MetricStatistics? all = _queries.GetMatching(Metric, LabelSet.Empty, from, to);
        var byStatus = _queries.GetGrouped(Metric, LabelSet.Empty, ["status_code"], from, to)
            .ToDictionary(g => g.Group.GetValue("status_code") ?? string.Empty, g => g.Statistics.Count, StringComparer.Ordinal);
        RouteData[] routes = [.. _queries.GetGrouped(Metric, LabelSet.Empty, ["method", "route"], from, to)
            .Select(g => new RouteData(g.Group.GetValue("method") ?? string.Empty, g.Group.GetValue("route") ?? string.Empty, g.Statistics.Count, StatSummary.From(g.Statistics)))];
        long count = all?.Count ?? 0;
        return new RequestData(count, count / span.TotalSeconds, StatSummary.From(all), byStatus, routes);
    }

    private DocumentData Documents(DateTimeOffset from, DateTimeOffset to)
    {
        MetricStatistics? all = _queries.GetMatching(DocumentMetrics.DurationMetric, LabelSet.Empty, from, to);
        var sizes = _queries.GetGrouped(DocumentMetrics.SizeMetric, LabelSet.Empty, ["type", "status"], from, to).ToDictionary(g => g.Group, g => g.Statistics);
        DocumentTypeData[] types = [.. _queries.GetGrouped(DocumentMetrics.DurationMetric, LabelSet.Empty, ["type", "status"], from, to)
            .Select(g => new DocumentTypeData(g.Group.GetValue("type") ?? string.Empty, g.Group.GetValue("status") ?? string.Empty, g.Statistics.Count,
                StatSummary.From(g.Statistics), StatSummary.From(sizes.GetValueOrDefault(g.Group))))];
        return new DocumentData(all?.Count ?? 0, StatSummary.From(all), types);
    }

    private EngineData Engine(DateTimeOffset from, DateTimeOffset to, Dictionary<string, SinkHealth>? judged)
    {
        PipelineMetrics m = _pipeline.GetMetrics();
        // Totals recorded as gauges: the increase over the window is the last recorded total less the smallest.
        MetricStatistics? accepted = _queries.GetMatching(EngineSelfMetrics.AcceptedMetric, LabelSet.Empty, from, to);
        MetricStatistics? dropped = _queries.GetMatching(EngineSelfMetrics.DroppedMetric, LabelSet.Empty, from, to);
        MetricStatistics? late = _queries.GetMatching(EngineSelfMetrics.LateMetric, LabelSet.Empty, from, to);
        double? acceptedRate = accepted is { Count: > 1 } ? (accepted.Max - accepted.Min) / ((accepted.ToUnixMs - accepted.FromUnixMs) / 1000.0) : null;
        return new EngineData(m.Offered, m.Accepted, m.Rejected, m.Dropped, m.Late, m.WindowsEmitted, m.SeriesActive, acceptedRate,
            dropped is null ? null : dropped.Max - dropped.Min, late is null ? null : late.Max - late.Min,
            [.. m.Sinks.Select(s => new SinkData(s.Name, (judged is not null && judged.TryGetValue(s.Name, out SinkHealth? h) ? h.State : s.State).ToString(), s.QueueDepth, s.BatchesWritten, s.BatchesFailed + s.BatchesDropped, s.Errors, s.LastError))]);
    }
}
