namespace Monitoring.Stream.Sinks;

/// <summary>
/// Implemented by a sink that acknowledges a window once it is in its own bounded queue and delivers it later
/// (remote write, a Kafka producer): how those later deliveries fare. The pipeline folds it into the sink's
/// <see cref="SinkState"/> and last error, so self-metrics, health checks and dashboards see a receiver that is
/// down even though the sink's writes still succeed.
/// </summary>
public interface IDeliveryStatus
{
    /// <summary>
    /// <see cref="SinkState.Retrying"/> while deliveries are being retried, <see cref="SinkState.Dropping"/> while they
    /// are being given up, <see cref="SinkState.Ok"/> otherwise (<see cref="SinkState.Stalled"/> is the pipeline's own).
    /// </summary>
    SinkState DeliveryState { get; }

    /// <summary>The last delivery error, if any.</summary>
    string? DeliveryError { get; }
}
