namespace Monitoring.Stream.Kafka.Sink;

/// <summary>Settings of a <see cref="KafkaWindowSink"/>.</summary>
public sealed class KafkaWindowSinkOptions
{
    /// <summary>The brokers, <c>host:port</c> separated by commas.</summary>
    public string BootstrapServers { get; set; } = "localhost:9092";

    /// <summary>The topic the window batches go to.</summary>
    public string Topic { get; set; } = "metrics.aggregates";

    /// <summary>How long librdkafka keeps retrying one message before reporting it failed (default 30 s).</summary>
    public TimeSpan DeliveryTimeout { get; set; } = TimeSpan.FromSeconds(30);

    /// <summary>
    /// Called for each batch as it is written; what it returns goes to the header
    /// <see cref="AggregateHeaders.SourceOffsets"/> (<see cref="Source.KafkaPointSource.DescribeSourceOffsets"/> of the
    /// instance's source). Null or an empty text: no header.
    /// </summary>
    public Func<Monitoring.Stream.Sinks.WindowBatch, string?>? SourceOffsets { get; set; }

    /// <summary>Extra librdkafka producer settings (security, client id, compression).</summary>
    public IDictionary<string, string> ClientSettings { get; } = new Dictionary<string, string>(StringComparer.Ordinal);
}
