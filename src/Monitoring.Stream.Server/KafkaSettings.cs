namespace Monitoring.Stream.Server;

/// <summary>Kafka settings of the <c>run</c> command (<c>MonitoringStream:Server:Kafka</c>).</summary>
internal sealed class KafkaSettings
{
    /// <summary>The cluster's <c>bootstrap.servers</c>; Kafka is off when neither this nor <see cref="Mock"/> is set.</summary>
    public string? BootstrapServers { get; set; }

    /// <summary>Start librdkafka's mock cluster in this process and use it.</summary>
    public bool Mock { get; set; }

    /// <summary>The topic points are consumed from (empty: no Kafka source).</summary>
    public string? PointsTopic { get; set; } = "metrics.points";

    /// <summary>The topic window aggregates are produced to (empty: no Kafka sink).</summary>
    public string? AggregatesTopic { get; set; } = "metrics.aggregates";

    /// <summary>The consumer group of the engine instances.</summary>
    public string GroupId { get; set; } = "monitoring-stream";

    /// <summary>The dead-letter topic for undecodable messages (default: &lt;points topic&gt;.dlq).</summary>
    public string? DeadLetterTopic { get; set; }

    /// <summary>
    /// How often the source cuts its partitions into commit segments, so that after a crash a consumer removes
    /// every duplicate exactly (docs/kafka.md); <c>00:00:00</c> turns segments off.
    /// </summary>
    public TimeSpan SegmentInterval { get; set; } = TimeSpan.FromSeconds(10);

    /// <summary>
    /// librdkafka settings applied to every Kafka client of the instance (source consumer, dead-letter and
    /// aggregate producers), e.g. <c>security.protocol</c>, <c>sasl.*</c> or <c>session.timeout.ms</c>.
    /// </summary>
    public Dictionary<string, string> ClientSettings { get; } = new(StringComparer.Ordinal);

    /// <summary>Whether Kafka is configured.</summary>
    public bool Enabled => Mock || !string.IsNullOrWhiteSpace(BootstrapServers);
}
