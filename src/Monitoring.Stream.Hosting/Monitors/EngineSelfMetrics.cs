using System.Diagnostics.Metrics;
using Monitoring.Stream.Hosting.Instruments;
using Monitoring.Stream.Pipeline;

namespace Monitoring.Stream.Hosting.Monitors;

/// <summary>
/// The engine's self-metrics, two ways: published through the <see cref="Meter"/> named
/// <see cref="MeterName"/> (so OpenTelemetry, prometheus-net or dotnet-counters can export them), and
/// recorded into the engine itself as gauges on each <see cref="Record"/>, so the dashboard can
/// compute rates over its window.
/// </summary>
public sealed class EngineSelfMetrics : IDisposable
{
    /// <summary>The name of the meter that publishes the engine's self-metrics.</summary>
    public const string MeterName = "Monitoring.Stream";

    /// <summary>Engine metric of the accepted-points total.</summary>
    public const string AcceptedMetric = "monitoring_stream_points_accepted_total";

    /// <summary>Engine metric of the dropped-points total.</summary>
    public const string DroppedMetric = "monitoring_stream_points_dropped_total";

    /// <summary>Engine metric of the late-points total.</summary>
    public const string LateMetric = "monitoring_stream_points_late_total";

    private readonly MetricsPipeline _pipeline;
    private readonly Meter _meter;
    private readonly MetricGauge _accepted;
    private readonly MetricGauge _dropped;
    private readonly MetricGauge _late;
    private readonly MetricGauge _rejected;
    private readonly MetricGauge _sinkQueue;
    private readonly Lock _gate = new();
    private PipelineMetrics? _snapshot;
    private long _snapshotAt;

    /// <summary>Creates the meter and the engine gauges for <paramref name="collector"/>'s pipeline.</summary>
    public EngineSelfMetrics(MetricsCollector collector, IMeterFactory? meterFactory = null)
    {
        ArgumentNullException.ThrowIfNull(collector);
        _pipeline = collector.Pipeline;
        _accepted = collector.CreateGauge(AcceptedMetric, [], "Points accepted by the engine since start.");
        _dropped = collector.CreateGauge(DroppedMetric, [], "Points dropped by the engine since start.");
        _late = collector.CreateGauge(LateMetric, [], "Points that came after their window closed, since start.");
        _rejected = collector.CreateGauge("monitoring_stream_points_rejected_total", [], "Points refused by the engine since start.");
        _sinkQueue = collector.CreateGauge("monitoring_stream_sink_queue_depth", ["sink"], "Windows waiting for a sink.");
        _meter = meterFactory?.Create(MeterName) ?? new Meter(MeterName);
        _meter.CreateObservableCounter("monitoring_stream.points.offered", () => Snapshot().Offered, description: "Points offered by producers.");
        _meter.CreateObservableCounter("monitoring_stream.points.accepted", () => Snapshot().Accepted, description: "Points handed to a shard.");
        _meter.CreateObservableCounter("monitoring_stream.points.rejected", () => Snapshot().Rejected, description: "Points refused (bad value, name or timestamp).");
        _meter.CreateObservableCounter("monitoring_stream.points.dropped", () => Snapshot().Dropped, description: "Points dropped before a shard.");
        _meter.CreateObservableCounter("monitoring_stream.points.late", () => Snapshot().Late, description: "Points that came after their window closed.");
        _meter.CreateObservableCounter("monitoring_stream.windows.emitted", () => Snapshot().WindowsEmitted, description: "Window batches emitted.");
        _meter.CreateObservableGauge("monitoring_stream.series.active", () => Snapshot().SeriesActive, description: "Series known to the registry.");
        _meter.CreateObservableGauge("monitoring_stream.shard.queue.fill", () => ShardQueueFill(Snapshot()), description: "Fullest shard queue, as a fraction of its capacity.");
        _meter.CreateObservableGauge("monitoring_stream.sink.queue.depth", () => Snapshot().Sinks.Select(s =>
            new Measurement<int>(s.QueueDepth, new KeyValuePair<string, object?>("sink", s.Name))), description: "Windows waiting for each sink.");
        _meter.CreateObservableGauge("monitoring_stream.sink.state", () => Snapshot().Sinks.Select(s =>
            new Measurement<int>((int)s.State, new KeyValuePair<string, object?>("sink", s.Name))), description: "Each sink's state: 0 ok, 1 retrying, 2 stalled, 3 dropping.");
    }

    /// <summary>The meter publishing this engine's self-metrics.</summary>
    public Meter Meter => _meter;

    /// <summary>Writes the current totals into the engine (the hosted service calls this on the sampling interval).</summary>
    public void Record()
    {
        PipelineMetrics m = _pipeline.GetMetrics();
        _accepted.Set(m.Accepted);
        _dropped.Set(m.Dropped);
        _late.Set(m.Late);
        _rejected.Set(m.Rejected);
        foreach (SinkMetrics sink in m.Sinks)
        {
            _sinkQueue.Set(sink.QueueDepth, sink.Name);
        }
    }

    private static double ShardQueueFill(PipelineMetrics m) =>
        m.ShardQueueCapacity == 0 || m.ShardQueueDepth.Count == 0 ? 0 : (double)m.ShardQueueDepth.Max() / m.ShardQueueCapacity;

    /// <summary>One snapshot serves every observable callback of one collection (they run back to back).</summary>
    private PipelineMetrics Snapshot()
    {
        lock (_gate)
        {
            long now = Environment.TickCount64;
            if (_snapshot is null || now - _snapshotAt > 100)
            {
                _snapshot = _pipeline.GetMetrics();
                _snapshotAt = now;
            }

            return _snapshot;
        }
    }

    /// <summary>Disposes the meter.</summary>
    public void Dispose() => _meter.Dispose();
}
