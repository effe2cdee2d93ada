using Microsoft.Extensions.Diagnostics.HealthChecks;
using Monitoring.Stream.Hosting.Instruments;

namespace Monitoring.Stream.Hosting.Health;

/// <summary>
/// Records every health check result as metrics — <c>monitoring_health_status{check}</c> (2 healthy,
/// 1 degraded, 0 unhealthy, as <see cref="HealthStatus"/> numbers them; <c>check="overall"</c> for the
/// aggregate) and <c>monitoring_health_check_duration_seconds{check}</c> — and keeps the last report.
/// Registered as an <see cref="IHealthCheckPublisher"/>, it runs on the framework's publishing interval.
/// </summary>
public sealed class HealthMetricsPublisher : IHealthCheckPublisher
{
    /// <summary>The metric of each check's status.</summary>
    public const string StatusMetric = "monitoring_health_status";

    /// <summary>The <c>check</c> label of the aggregate status; no check may be registered under it (refused at start-up).</summary>
    public const string OverallCheck = "overall";

    /// <summary>The metric of each check's duration.</summary>
    public const string DurationMetric = "monitoring_health_check_duration_seconds";

    private readonly MetricGauge _status;
    private readonly MetricHistogram _duration;
    private HealthReport? _last;

    /// <summary>Creates the publisher writing through <paramref name="collector"/>.</summary>
    public HealthMetricsPublisher(MetricsCollector collector)
    {
        ArgumentNullException.ThrowIfNull(collector);
        _status = collector.CreateGauge(StatusMetric, ["check"], "Health status: 2 healthy, 1 degraded, 0 unhealthy.");
        _duration = collector.CreateHistogram(DurationMetric, ["check"], "Time a health check took.", "s");
    }

    /// <summary>The last report published, or null before the first.</summary>
    public HealthReport? LastReport => Volatile.Read(ref _last);

    /// <inheritdoc />
    public Task PublishAsync(HealthReport report, CancellationToken cancellationToken)
    {
        ArgumentNullException.ThrowIfNull(report);
        foreach ((string name, HealthReportEntry entry) in report.Entries)
        {
            _status.Set((int)entry.Status, name);
            _duration.Record(entry.Duration.TotalSeconds, name);
        }

        _status.Set((int)report.Status, OverallCheck);
        _duration.Record(report.TotalDuration.TotalSeconds, OverallCheck);
        Volatile.Write(ref _last, report);
        return Task.CompletedTask;
    }
}
