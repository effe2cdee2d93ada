namespace Monitoring.Stream.Sinks;

/// <summary>How a sink fares, as seen by the pipeline.</summary>
public enum SinkState
{
    /// <summary>Writes succeed and the queue has room.</summary>
    Ok = 0,

    /// <summary>The last attempt failed or timed out; the window is being retried.</summary>
    Retrying = 1,

    /// <summary>The queue is full and the policy is to block: shards wait for this sink.</summary>
    Stalled = 2,

    /// <summary>The queue overflowed under the drop-oldest policy: windows are being dropped for this sink.</summary>
    Dropping = 3,
}
