using Confluent.Kafka;

namespace Monitoring.Stream.Kafka.Tests.Support;

/// <summary>Plain Confluent.Kafka producing and reading for tests, independent of the code under test.</summary>
internal static class KafkaTestClient
{
    public static void Produce(string bootstrap, string topic, IEnumerable<(int Partition, byte[] Value)> messages)
    {
        using IProducer<Null, byte[]> producer = new ProducerBuilder<Null, byte[]>(new ProducerConfig
        {
            BootstrapServers = bootstrap,
            EnableIdempotence = true,
            MessageMaxBytes = 16 << 20,
        }).SetLogHandler(static (_, _) => { }).Build();
        foreach ((int partition, byte[] value) in messages)
        {
            producer.Produce(new TopicPartition(topic, partition), new Message<Null, byte[]> { Value = value });
        }

        Assert.Equal(0, producer.Flush(TimeSpan.FromSeconds(30)));
    }

    /// <summary>Reads <paramref name="count"/> messages from the start of every partition of <paramref name="topic"/>, or fails.</summary>
    public static List<ConsumeResult<byte[]?, byte[]?>> ReadAll(string bootstrap, string topic, int count, TimeSpan timeout)
    {
        using IConsumer<byte[]?, byte[]?> consumer = new ConsumerBuilder<byte[]?, byte[]?>(new ConsumerConfig
        {
            BootstrapServers = bootstrap,
            GroupId = "reader-" + Guid.NewGuid().ToString("N"),
            AutoOffsetReset = AutoOffsetReset.Earliest,
            EnableAutoCommit = false,
        }).SetLogHandler(static (_, _) => { }).Build();
        consumer.Subscribe(topic);
        var results = new List<ConsumeResult<byte[]?, byte[]?>>();
        using var expired = new CancellationTokenSource(timeout);
        while (results.Count < count)
        {
            Assert.False(expired.IsCancellationRequested, $"read {results.Count} of {count} messages from {topic} within {timeout.TotalSeconds} s");
            ConsumeResult<byte[]?, byte[]?>? result = consumer.Consume(TimeSpan.FromMilliseconds(100));
            if (result is not null && !result.IsPartitionEOF)
            {
                results.Add(result);
            }
        }

        consumer.Close();
        return results;
    }

    /// <summary>The group's committed offsets of partitions 0..partitions-1 (-1001 when none).</summary>
    public static long[] Committed(string bootstrap, string group, string topic, int partitions)
    {
        using IConsumer<Ignore, Ignore> consumer = new ConsumerBuilder<Ignore, Ignore>(new ConsumerConfig
        {
            BootstrapServers = bootstrap,
            GroupId = group,
        }).SetLogHandler(static (_, _) => { }).Build();
        List<TopicPartitionOffset> offsets = consumer.Committed(
            Enumerable.Range(0, partitions).Select(p => new TopicPartition(topic, p)), TimeSpan.FromSeconds(10));
        return [.. offsets.OrderBy(o => o.Partition.Value).Select(o => o.Offset.Value)];
    }
}
