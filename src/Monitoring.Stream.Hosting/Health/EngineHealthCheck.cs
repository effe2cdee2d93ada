using System.Globalization;
using Microsoft.Extensions.Diagnostics.HealthChecks;
using Monitoring.Stream.Pipeline;
using Monitoring.Stream.Sinks;

namespace Monitoring.Stream.Hosting.Health;

/// <summary>
/// The engine's own health: shard queue fill, drop and late rates since the previous check, and
/// each sink's state (retrying, stalled, dropping). The worst finding decides the status; the data
/// dictionary carries every figure.
/// </summary>
public sealed class EngineHealthCheck : IHealthCheck
{
    private readonly MetricsPipeline _pipeline;
    private readonly EngineHealthOptions _options;
    private readonly TimeProvider _time;
    private readonly Lock _gate = new();
    private readonly Dictionary<string, SinkProgress> _sinks = new(StringComparer.Ordinal);
    private long _previousOffered;
    private long _previousDropped;
    private long _previousAccepted;
    private long _previousLate;

    /// <summary>Creates the check for <paramref name="pipeline"/>.</summary>
    public EngineHealthCheck(MetricsPipeline pipeline, EngineHealthOptions? options = null, TimeProvider? time = null)
    {
        ArgumentNullException.ThrowIfNull(pipeline);
        _pipeline = pipeline;
        _options = options ?? new EngineHealthOptions();
        _options.Validate();
        _time = time ?? pipeline.Options.TimeProvider;
    }

    private sealed class SinkProgress
    {
        public long Done;
        public long Errors;
        public long Lost;
        public DateTimeOffset LastProgress;
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
            long offered = m.Offered - _previousOffered;
            long dropped = m.Dropped - _previousDropped;
            long accepted = m.Accepted - _previousAccepted;
            long late = m.Late - _previousLate;
            (_previousOffered, _previousDropped, _previousAccepted, _previousLate) = (m.Offered, m.Dropped, m.Accepted, m.Late);
            double dropRate = offered <= 0 ? 0 : (double)dropped / offered;
            double lateRate = accepted <= 0 ? 0 : (double)late / accepted;
            data["drop_rate"] = dropRate;
            data["late_rate"] = lateRate;
            Worsen(Grade(dropRate, _options.DropRateDegraded, _options.DropRateUnhealthy), string.Create(CultureInfo.InvariantCulture, $"{dropRate:P2} of points dropped"));
            Worsen(Grade(lateRate, _options.LateRateDegraded, _options.LateRateUnhealthy), string.Create(CultureInfo.InvariantCulture, $"{lateRate:P2} of points late"));

            var states = new List<SinkHealth>(m.Sinks.Count);
            foreach (SinkMetrics sink in m.Sinks)
            {
                SinkHealth health = AssessSink(sink, m.WindowsEmitted, now);
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

    private SinkHealth AssessSink(SinkMetrics sink, long windowsEmitted, DateTimeOffset now)
    {
        if (!_sinks.TryGetValue(sink.Name, out SinkProgress? progress))
        {
            _sinks[sink.Name] = progress = new SinkProgress { LastProgress = now };
        }

        long lost = sink.BatchesFailed + sink.BatchesDropped;
        long done = sink.BatchesWritten + lost + sink.BatchesAbandoned;
        // A window in the sink's hands is out of its queue: count what was emitted and not done as well.
        long pending = Math.Max(sink.QueueDepth, windowsEmitted - done);
        bool retrying = sink.State == SinkState.Retrying || sink.Errors > progress.Errors;
        bool dropping = sink.State == SinkState.Dropping || lost > progress.Lost;
        if (done != progress.Done || pending <= 0)
        {
            progress.LastProgress = now;
        }

        progress.Done = done;
        progress.Errors = sink.Errors;
        progress.Lost = lost;
        TimeSpan since = pending <= 0 ? TimeSpan.Zero : now - progress.LastProgress;
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
