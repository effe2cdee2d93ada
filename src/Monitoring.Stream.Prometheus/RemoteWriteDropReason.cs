namespace Monitoring.Stream.Prometheus;

/// <summary>Why samples were given up instead of reaching the receiver.</summary>
public enum RemoteWriteDropReason
{
    /// <summary>The receiver answered a 4xx other than 413 and 429 (for example 400 for a malformed or out-of-bounds sample); not retried, per the spec.</summary>
    Rejected,

    /// <summary>The receiver answered 413 for a request of a single series, which cannot be split further.</summary>
    PayloadTooLarge,

    /// <summary>The receiver answered 429 and <see cref="RemoteWriteSinkOptions.RetryOnRateLimit"/> is off.</summary>
    RateLimited,

    /// <summary>The oldest queued request was dropped to make room, because the queue was at its bound.</summary>
    QueueFull,

    /// <summary>A request failed <see cref="RemoteWriteSinkOptions.MaxRetries"/> times with a retryable error.</summary>
    RetriesExhausted,

    /// <summary>The sink was disposed with requests still queued or in flight.</summary>
    Shutdown,
}
