namespace Monitoring.Stream.Kafka.Producer;

/// <summary>Settings of a <see cref="PointProducer"/>.</summary>
public sealed class PointProducerOptions
{
    /// <summary>The brokers, <c>host:port</c> separated by commas.</summary>
    public string BootstrapServers { get; set; } = "localhost:9092";

    /// <summary>The topic of point messages (docs/wire-format.md).</summary>
    public string Topic { get; set; } = "metrics.points";

    /// <summary>
    /// The topic's partition count; when unset it is read from the cluster's metadata once, at construction.
    /// Series are spread over this many partitions by a stable hash, so it must not change while producers run.
    /// </summary>
    public int? Partitions { get; set; }

    /// <summary>Most points in one message (default 1,000); a partition's batch is sent when it is full.</summary>
    public int MaxPointsPerMessage { get; set; } = 1000;

    /// <summary>Most bytes of one message, estimated before encoding with worst-case sizes (default 512 KiB).</summary>
    public int MaxMessageBytes { get; set; } = 512 * 1024;

    /// <summary>Longest time a point waits in a partition's batch before the batch is sent (default 100 ms).</summary>
    public TimeSpan Linger { get; set; } = TimeSpan.FromMilliseconds(100);

    /// <summary>How long <see cref="PointProducer.Dispose"/> waits for outstanding deliveries (default 10 s).</summary>
    public TimeSpan DisposeTimeout { get; set; } = TimeSpan.FromSeconds(10);

    /// <summary>The clock of the linger timer (default: the system clock); tests pass a fake one.</summary>
    public TimeProvider TimeProvider { get; set; } = TimeProvider.System;

    /// <summary>Extra librdkafka producer settings (security, client id, <c>message.timeout.ms</c>).</summary>
    public IDictionary<string, string> ClientSettings { get; } = new Dictionary<string, string>(StringComparer.Ordinal);

    internal void Validate()
    {
        ArgumentException.ThrowIfNullOrWhiteSpace(BootstrapServers);
        ArgumentException.ThrowIfNullOrWhiteSpace(Topic);
        ArgumentNullException.ThrowIfNull(TimeProvider);
        if (Partitions is { } partitions)
        {
            ArgumentOutOfRangeException.ThrowIfLessThan(partitions, 1, nameof(Partitions));
        }

        ArgumentOutOfRangeException.ThrowIfLessThan(MaxPointsPerMessage, 1, nameof(MaxPointsPerMessage));
        ArgumentOutOfRangeException.ThrowIfLessThan(MaxMessageBytes, 1024, nameof(MaxMessageBytes));
        if (Linger <= TimeSpan.Zero || DisposeTimeout < TimeSpan.Zero)
        {
            throw new ArgumentOutOfRangeException(nameof(Linger), "Linger must be positive and DisposeTimeout not negative.");
        }
    }
}
