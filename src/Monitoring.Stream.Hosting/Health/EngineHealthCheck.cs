using System.Globalization;
using Microsoft.Extensions.Diagnostics.HealthChecks;
using Monitoring.Stream.Pipeline;
using Monitoring.Stream.Sinks;

namespace Monitoring.Stream.Hosting.Health;

/// <summary>
/// The engine's own health: shard queue fill, drop and late rates over the trailing
/// <see cref="EngineHealthOptions.RateWindow"/>, and each sink's state (retrying, stalled, dropping). The worst finding
/// decides the status; the data dictionary carries every figure.
/// </summary>
/// <remarks>
/// Every caller (the health endpoint, the dashboard, the metrics publisher, a load balancer) gets the same answer at
/// the same moment: rates and a sink's lost windows are taken against a snapshot at least a rate window old, kept by the check,
/// never against "the previous check" (which another caller may just have made). A sink's stall is measured from when
/// it took the window it holds (<see cref="SinkMetrics.BusyFor"/>), not from when a check last looked.
/// </remarks>
public sealed class EngineHealthCheck : IHealthCheck
{
    private readonly MetricsPipeline _pipeline;
    private readonly EngineHealthOptions _options;
    private readonly TimeProvider _time;
    private readonly Lock _gate = new();

    // Two snapshots: the start of the current rate period and of the one before. The baseline of a check is the
    // newest of them at least a rate window old (or the oldest there is), so the trailing span is one to two windows.
    private Snapshot _periodStart;
    private Snapshot? _previousPeriodStart;

    /// <summary>Creates the check for <paramref name="pipeline"/>.</summary>
    public EngineHealthCheck(MetricsPipeline pipeline, EngineHealthOptions? options = null, TimeProvider? time = null)
    {
        ArgumentNullException.ThrowIfNull(pipeline);
        _pipeline = pipeline;
        _options = options ?? new EngineHealthOptions();
        _options.Validate();
        _time = time ?? pipeline.Options.TimeProvider;
        // The counters as the check starts, not zeros: what happened before it existed (a DI singleton may be created
        // by the first /health request, hours after the start) is not reported as if it had just happened.
        _periodStart = Snapshot.Of(_time.GetUtcNow(), pipeline.GetMetrics());
    }

    /// <summary>Counters at one moment: the engine's, and each sink's windows lost (given up or dropped).</summary>
    private sealed record Snapshot(DateTimeOffset At, long Offered, long Dropped, long Accepted, long Late, Dictionary<string, long> Sinks)
    {
        public static Snapshot Of(DateTimeOffset at, PipelineMetrics m)
        {
            var sinks = new Dictionary<string, long>(StringComparer.Ordinal);
            foreach (SinkMetrics sink in m.Sinks)
            {
                sinks[sink.Name] = sink.BatchesFailed + sink.BatchesDropped;
            }

            return new Snapshot(at, m.Offered, m.Dropped, m.Accepted, m.Late, sinks);
        }
    }

    /// <summary>The sinks' states at the last check.</summary>
    public IReadOnlyList<SinkHealth> LastSinkStates { get; private set; } = [];

    /// <inheritdoc />
    public Task<HealthCheckResult> CheckHealthAsync(HealthCheckContext context, CancellationToken cancellationToken = default)
    {
        PipelineMetrics m = _pipeline.GetMetrics();
        DateTimeOffset now = _time.GetUtcNow();
        var status = HealthStatus.Healthy;
        var reasons = new List<string>();
        var data = new Dictionary<string, object>(StringComparer.Ordinal);

        void Worsen(HealthStatus found, string reason)
        {
            if (found < status)
            {
                status = found;
            }

            if (found != HealthStatus.Healthy)
            {
                reasons.Add(reason);
            }
        }

        double fill = m.ShardQueueCapacity == 0 || m.ShardQueueDepth.Count == 0 ? 0 : (double)m.ShardQueueDepth.Max() / m.ShardQueueCapacity;
        data["shard_queue_fill"] = fill;
        Worsen(Grade(fill, _options.ShardQueueFillDegraded, _options.ShardQueueFillUnhealthy), string.Create(CultureInfo.InvariantCulture, $"shard queue {fill:P0} full"));

        lock (_gate)
        {
            var current = Snapshot.Of(now, m);

            Snapshot baseline = now - _periodStart.At >= _options.RateWindow ? _periodStart : _previousPeriodStart ?? _periodStart;
            if (now - _periodStart.At >= _options.RateWindow)
            {
                (_previousPeriodStart, _periodStart) = (_periodStart, current);
            }

            long offered = m.Offered - baseline.Offered;
            long dropped = m.Dropped - baseline.Dropped;
            long accepted = m.Accepted - baseline.Accepted;
            long late = m.Late - baseline.Late;
            double dropRate = offered <= 0 ? 0 : (double)dropped / offered;
            double lateRate = accepted <= 0 ? 0 : (double)late / accepted;
            data["drop_rate"] = dropRate;
            data["late_rate"] = lateRate;
            data["rate_window_seconds"] = Math.Round((now - baseline.At).TotalSeconds, 3);
            Worsen(Grade(dropRate, _options.DropRateDegraded, _options.DropRateUnhealthy), string.Create(CultureInfo.InvariantCulture, $"{dropRate:P2} of points dropped"));
            Worsen(Grade(lateRate, _options.LateRateDegraded, _options.LateRateUnhealthy), string.Create(CultureInfo.InvariantCulture, $"{lateRate:P2} of points late"));

            var states = new List<SinkHealth>(m.Sinks.Count);
            foreach (SinkMetrics sink in m.Sinks)
            {
                SinkHealth health = AssessSink(sink, m.WindowsEmitted, baseline.Sinks.GetValueOrDefault(sink.Name));
                states.Add(health);
                data["sink." + sink.Name] = health.State.ToString();
                HealthStatus found = health.State switch
                {
                    SinkState.Ok => HealthStatus.Healthy,
                    SinkState.Retrying => HealthStatus.Degraded,
                    SinkState.Dropping => HealthStatus.Unhealthy,
                    _ => health.SinceProgress >= _options.SinkStalledUnhealthyAfter ? HealthStatus.Unhealthy : HealthStatus.Degraded,
                };
                Worsen(found, string.Create(CultureInfo.InvariantCulture,
                    $"sink {sink.Name} {health.State.ToString().ToLowerInvariant()} ({health.Pending} window(s) pending, no progress for {health.SinceProgress.TotalSeconds:0} s{(health.LastError is null ? string.Empty : ", last error: " + health.LastError)})"));
            }

            LastSinkStates = states;
        }

        string description = reasons.Count == 0 ? "The engine is keeping up." : string.Join("; ", reasons);
        return Task.FromResult(new HealthCheckResult(status, description, data: data));
    }

    private SinkHealth AssessSink(SinkMetrics sink, long windowsEmitted, long lostBefore)
    {
        long lost = sink.BatchesFailed + sink.BatchesDropped;
        long done = sink.BatchesWritten + lost + sink.BatchesAbandoned;
        // A window in the sink's hands is out of its queue: count what was emitted and not done as well.
        long pending = Math.Max(sink.QueueDepth, windowsEmitted - done);
        // Retrying is the sink's state now (its last attempt failed), so a sink that recovered is Ok at once; a window it
        // gave up or dropped counts for the whole rate window.
        bool retrying = sink.State == SinkState.Retrying;
        bool dropping = sink.State == SinkState.Dropping || lost > lostBefore;

        // The sink takes the next window as soon as it is done with one: the time on the window it holds is the
        // time since it last made progress.
        TimeSpan since = pending <= 0 ? TimeSpan.Zero : sink.BusyFor;

        // The pipeline calls a sink stalled when its full queue blocks the shards; a sink holding one
        // window for minutes with room in its queue is stalled too, by the time it makes no progress.
        bool stalled = sink.State == SinkState.Stalled || (pending > 0 && since >= _options.SinkStalledDegradedAfter);
        SinkState state = dropping ? SinkState.Dropping
            : stalled ? SinkState.Stalled
            : retrying ? SinkState.Retrying
            : SinkState.Ok;
        return new SinkHealth(sink.Name, state, Math.Max(pending, 0), since, sink.LastError);
    }

    private static HealthStatus Grade(double value, double degraded, double unhealthy) =>
        value >= unhealthy && unhealthy > 0 ? HealthStatus.Unhealthy
        : value >= degraded && degraded > 0 ? HealthStatus.Degraded
        : HealthStatus.Healthy;
}
