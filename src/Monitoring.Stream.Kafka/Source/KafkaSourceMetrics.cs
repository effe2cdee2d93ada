using Monitoring.Stream.Kafka.WireFormat;

namespace Monitoring.Stream.Kafka.Source;

/// <summary>Counters of a <see cref="KafkaPointSource"/>.</summary>
public sealed record KafkaSourceMetrics
{
    /// <summary>Messages read from the topic (each read counts, including a re-read after a failed dead-letter write).</summary>
    public long Messages { get; init; }

    /// <summary>Bytes of those messages.</summary>
    public long Bytes { get; init; }

    /// <summary>Points in messages that decoded.</summary>
    public long Points { get; init; }

    /// <summary>Points of good messages the engine refused (counted in the pipeline by reason and source).</summary>
    public long PointsRefused { get; init; }

    /// <summary>Messages written to the dead-letter topic, by reason.</summary>
    public required IReadOnlyDictionary<PointDecodeError, long> DeadLettered { get; init; }

    /// <summary>Dead-letter writes that failed or timed out; the message was read again.</summary>
    public long DeadLetterFailures { get; init; }

    /// <summary>Offset commits that succeeded.</summary>
    public long Commits { get; init; }

    /// <summary>Offset commits that failed (retried at the next interval).</summary>
    public long CommitFailures { get; init; }

    /// <summary>The last commit error, if any.</summary>
    public string? LastCommitError { get; init; }

    /// <summary>Cuts made (see <see cref="KafkaPointSourceOptions.SegmentInterval"/>): open windows emitted so that commits fall between messages.</summary>
    public long Cuts { get; init; }

    /// <summary>Cuts given up because the shards did not emit the windows within the revoke timeout (the segment went on; nothing is lost).</summary>
    public long CutTimeouts { get; init; }

    /// <summary>
    /// Messages read again after this instance got a partition back whose revoke commit had failed, and skipped:
    /// their points were in windows every sink had acknowledged before the revoke.
    /// </summary>
    public long SkippedMessages { get; init; }

    /// <summary>Points of those skipped messages (aggregated once, before the revoke; not counted in <see cref="Points"/> again).</summary>
    public long SkippedPoints { get; init; }

    /// <summary>Times the source paused its partitions because the shards were full.</summary>
    public long Pauses { get; init; }

    /// <summary>Whether the partitions are paused now.</summary>
    public bool Paused { get; init; }

    /// <summary>Partition assignments received.</summary>
    public long Assignments { get; init; }

    /// <summary>Partition revocations (and losses) handled.</summary>
    public long Revocations { get; init; }

    /// <summary>Revokes or stops whose points were not all acknowledged within the revoke timeout (the rest is re-read by the next owner).</summary>
    public long RevokeTimeouts { get; init; }

    /// <summary>Stops that went on without waiting longer for the consumer to close (see <see cref="KafkaPointSourceOptions.CloseTimeout"/>).</summary>
    public long CloseTimeouts { get; init; }

    /// <summary>Partitions assigned now.</summary>
    public int AssignedPartitions { get; init; }

    /// <summary>The last committed offset per partition (the next offset to read).</summary>
    public required IReadOnlyDictionary<int, long> CommittedOffsets { get; init; }

    /// <summary>Errors librdkafka reported on the consumer (a broker down or unreachable, a connection refused); it retries them itself.</summary>
    public long ConsumerErrors { get; init; }

    /// <summary>The last of those errors, code and reason, if any.</summary>
    public string? LastConsumerError { get; init; }

    /// <summary>How long ago the last consumer error was reported, if any.</summary>
    public TimeSpan? SinceLastConsumerError { get; init; }

    /// <summary>Per partition that delivered a message, how long ago its last message arrived: a partition whose leader is down stands out here.</summary>
    public IReadOnlyDictionary<int, TimeSpan> SinceLastMessage { get; init; } = new Dictionary<int, TimeSpan>();
}
