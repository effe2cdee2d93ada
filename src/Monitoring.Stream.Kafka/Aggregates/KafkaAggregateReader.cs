using System.Text;
using Apache.Arrow;
using Apache.Arrow.Ipc;
using Confluent.Kafka;
using Monitoring.Stream.Kafka.Sink;

namespace Monitoring.Stream.Kafka.Aggregates;

/// <summary>Reads the aggregate topic written by the Kafka sink into Arrow record batches and typed rows.</summary>
public sealed class KafkaAggregateReader : IDisposable
{
    private readonly IConsumer<byte[]?, byte[]?> _consumer;

    /// <summary>Subscribes to <paramref name="topic"/> from its start as a member of <paramref name="groupId"/> (a fresh group when null).</summary>
    public KafkaAggregateReader(string bootstrapServers, string topic, string? groupId = null, IEnumerable<KeyValuePair<string, string>>? clientSettings = null)
    {
        ArgumentException.ThrowIfNullOrWhiteSpace(bootstrapServers);
        ArgumentException.ThrowIfNullOrWhiteSpace(topic);
        var config = new ConsumerConfig
        {
            BootstrapServers = bootstrapServers,
            GroupId = groupId ?? "aggregate-reader-" + Guid.NewGuid().ToString("N"),
            AutoOffsetReset = AutoOffsetReset.Earliest,
            EnableAutoCommit = groupId is not null,
        };
        foreach ((string key, string value) in clientSettings ?? [])
        {
            config.Set(key, value);
        }

        _consumer = new ConsumerBuilder<byte[]?, byte[]?>(config).SetLogHandler(static (_, _) => { }).Build();
        _consumer.Subscribe(topic);
    }

    /// <summary>Reads the next message, or returns null when none arrives within <paramref name="timeout"/>.</summary>
    public AggregateMessage? Read(TimeSpan timeout)
    {
        ConsumeResult<byte[]?, byte[]?>? result = _consumer.Consume(timeout);
        if (result is null || result.IsPartitionEOF || result.Message.Value is null)
        {
            return null;
        }

        string key = result.Message.Key is null ? string.Empty : Encoding.UTF8.GetString(result.Message.Key);
        IReadOnlyList<SourceOffsetRange> offsets = result.Message.Headers is { } headers && headers.TryGetLastBytes(AggregateHeaders.SourceOffsets, out byte[] text)
            ? SourceOffsetRange.Parse(Encoding.UTF8.GetString(text))
            : [];
        return new AggregateMessage(key, result.Partition.Value, result.Offset.Value, ReadBatches(result.Message.Value), offsets);
    }

    /// <summary>Reads every record batch of an Arrow IPC stream.</summary>
    public static List<RecordBatch> ReadBatches(ReadOnlyMemory<byte> stream)
    {
        var batches = new List<RecordBatch>();
        using var reader = new ArrowStreamReader(stream);
        while (reader.ReadNextRecordBatch() is { } batch)
        {
            batches.Add(batch);
        }

        return batches;
    }

    /// <summary>Leaves the group and releases the consumer.</summary>
    public void Dispose()
    {
        _consumer.Close();
        _consumer.Dispose();
    }
}
