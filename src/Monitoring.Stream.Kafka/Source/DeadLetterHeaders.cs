namespace Monitoring.Stream.Kafka.Source;

/// <summary>Header names on dead-letter messages (docs/kafka.md).</summary>
public static class DeadLetterHeaders
{
    /// <summary>The topic the message was read from.</summary>
    public const string SourceTopic = "monitoring_stream.source_topic";

    /// <summary>Its partition, as decimal text.</summary>
    public const string SourcePartition = "monitoring_stream.source_partition";

    /// <summary>Its offset, as decimal text.</summary>
    public const string SourceOffset = "monitoring_stream.source_offset";

    /// <summary>Why it was refused: a <see cref="WireFormat.PointDecodeError"/> name.</summary>
    public const string Reason = "monitoring_stream.reason";

    /// <summary>The reason with the byte offset where decoding stopped.</summary>
    public const string Detail = "monitoring_stream.detail";
}
