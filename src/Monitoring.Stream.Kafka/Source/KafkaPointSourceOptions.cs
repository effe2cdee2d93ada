using Monitoring.Stream.Kafka.WireFormat;

namespace Monitoring.Stream.Kafka.Source;

/// <summary>Settings of a <see cref="KafkaPointSource"/>.</summary>
public sealed class KafkaPointSourceOptions
{
    /// <summary>The brokers, <c>host:port</c> separated by commas.</summary>
    public string BootstrapServers { get; set; } = "localhost:9092";

    /// <summary>The topic of point messages (docs/wire-format.md).</summary>
    public string Topic { get; set; } = "metrics.points";

    /// <summary>The consumer group; instances in one group share the topic's partitions.</summary>
    public string GroupId { get; set; } = "monitoring-stream";

    /// <summary>Where messages that fail to decode go, with headers naming their origin and the reason (default: topic + ".dlq").</summary>
    public string? DeadLetterTopic { get; set; }

    /// <summary>Limits on untrusted messages.</summary>
    public PointDecoderLimits Limits { get; set; } = new();

    /// <summary>How often acknowledged offsets are committed (default 1 s).</summary>
    public TimeSpan CommitInterval { get; set; } = TimeSpan.FromSeconds(1);

    /// <summary>
    /// How often the source cuts its partitions into commit segments (default 10 s; <see cref="TimeSpan.Zero"/>
    /// turns segments off). At a cut the open windows holding the source's points are emitted now, as partial
    /// aggregates that a consumer merges like any re-emission, and offsets are committed only at cuts: no
    /// aggregate message then holds points from both sides of a committed offset, so after a crash a consumer
    /// removes every duplicate exactly (docs/kafka.md, "Duplicates and how to remove them"). The price: a window
    /// open across a cut leaves in more than one message, and commits lag the read position by up to this
    /// interval plus the sinks' acknowledgement. Off: windows leave only when they close, commits follow the
    /// acknowledgements, and duplicates after a crash are bounded but not all removable.
    /// </summary>
    public TimeSpan SegmentInterval { get; set; } = TimeSpan.FromSeconds(10);

    /// <summary>Longest wait for a dead-letter write's acknowledgement before the message is read again (default 30 s).</summary>
    public TimeSpan DeadLetterTimeout { get; set; } = TimeSpan.FromSeconds(30);

    /// <summary>Longest wait, on a revoke or a stop, for a partition's points to be acknowledged before committing what is (default 30 s).</summary>
    public TimeSpan RevokeTimeout { get; set; } = TimeSpan.FromSeconds(30);

    /// <summary>
    /// Longest wait, when stopping, for the consumer to leave the group after the final commit (default 10 s).
    /// librdkafka's close can block during a rebalance; past this the stop goes on without it and counts it
    /// (<see cref="KafkaSourceMetrics.CloseTimeouts"/>): the group notices the member gone by its session timeout.
    /// </summary>
    public TimeSpan CloseTimeout { get; set; } = TimeSpan.FromSeconds(10);

    /// <summary>Shard queue fill (0..1) at which the source pauses its partitions (default 0.75).</summary>
    public double PauseAtQueueFill { get; set; } = 0.75;

    /// <summary>Shard queue fill (0..1) below which paused partitions resume (default 0.25).</summary>
    public double ResumeBelowQueueFill { get; set; } = 0.25;

    /// <summary>How often the shard queues are looked at for backpressure (default 10 ms).</summary>
    public TimeSpan BackpressureCheckInterval { get; set; } = TimeSpan.FromMilliseconds(10);

    /// <summary>Most kilobytes librdkafka prefetches per consumer (default 16,384): the bound on what waits before the engine.</summary>
    public int PrefetchKilobytes { get; set; } = 16 * 1024;

    /// <summary>Extra librdkafka settings for the consumer and the dead-letter producer (security, client id).</summary>
    public IDictionary<string, string> ClientSettings { get; } = new Dictionary<string, string>(StringComparer.Ordinal);

    internal string DeadLetterTopicOrDefault => DeadLetterTopic ?? Topic + ".dlq";

    internal void Validate()
    {
        ArgumentException.ThrowIfNullOrWhiteSpace(BootstrapServers);
        ArgumentException.ThrowIfNullOrWhiteSpace(Topic);
        ArgumentException.ThrowIfNullOrWhiteSpace(GroupId);
        ArgumentNullException.ThrowIfNull(Limits);
        Limits.Validate();
        if (CommitInterval <= TimeSpan.Zero || DeadLetterTimeout <= TimeSpan.Zero || RevokeTimeout <= TimeSpan.Zero || CloseTimeout <= TimeSpan.Zero || BackpressureCheckInterval <= TimeSpan.Zero)
        {
            throw new ArgumentOutOfRangeException(nameof(CommitInterval), "Intervals and timeouts must be positive.");
        }

        if (SegmentInterval < TimeSpan.Zero)
        {
            throw new ArgumentOutOfRangeException(nameof(SegmentInterval), SegmentInterval, "The segment interval must be zero (off) or positive.");
        }

        if (!(ResumeBelowQueueFill >= 0 && ResumeBelowQueueFill < PauseAtQueueFill && PauseAtQueueFill <= 1))
        {
            throw new ArgumentOutOfRangeException(nameof(PauseAtQueueFill), "Need 0 <= ResumeBelowQueueFill < PauseAtQueueFill <= 1.");
        }

        ArgumentOutOfRangeException.ThrowIfLessThan(PrefetchKilobytes, 1, nameof(PrefetchKilobytes));
    }
}
