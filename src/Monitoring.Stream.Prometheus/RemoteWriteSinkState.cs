namespace Monitoring.Stream.Prometheus;

/// <summary>How a <see cref="RemoteWriteSink"/> fares, for health checks and self-metrics.</summary>
public enum RemoteWriteSinkState
{
    /// <summary>Requests are accepted; nothing is being retried or dropped.</summary>
    Ok,

    /// <summary>At least one request is waiting to be retried after a server error, a timeout or a network error.</summary>
    Retrying,

    /// <summary>The last request that ended, ended dropped (rejected by the receiver, queue overflow or retries exhausted).</summary>
    Dropping,
}
