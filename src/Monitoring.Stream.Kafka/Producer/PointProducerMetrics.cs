namespace Monitoring.Stream.Kafka.Producer;

/// <summary>Counters of a <see cref="PointProducer"/>.</summary>
public sealed record PointProducerMetrics
{
    /// <summary>Points added by callers.</summary>
    public long PointsAdded { get; init; }

    /// <summary>Points in messages the brokers acknowledged.</summary>
    public long PointsDelivered { get; init; }

    /// <summary>Messages handed to librdkafka.</summary>
    public long MessagesProduced { get; init; }

    /// <summary>Messages the brokers acknowledged.</summary>
    public long MessagesDelivered { get; init; }

    /// <summary>Value bytes of the acknowledged messages.</summary>
    public long BytesDelivered { get; init; }

    /// <summary>Messages whose delivery failed after librdkafka's retries (their points are lost to Kafka).</summary>
    public long DeliveryFailures { get; init; }

    /// <summary>Points in those messages.</summary>
    public long PointsFailed { get; init; }

    /// <summary>Times a send found librdkafka's queue full and waited for it to drain.</summary>
    public long QueueFullWaits { get; init; }

    /// <summary>Points still in batches, not yet handed to librdkafka.</summary>
    public long PointsBuffered { get; init; }

    /// <summary>The last delivery error, if any.</summary>
    public string? LastError { get; init; }
}
