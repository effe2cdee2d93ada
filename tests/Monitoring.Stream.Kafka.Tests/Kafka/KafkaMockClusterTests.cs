using Confluent.Kafka;

namespace Monitoring.Stream.Kafka.Tests.Kafka;

public class KafkaMockClusterTests
{
    [Fact]
    public void Constructor_ThreeBrokers_ServesProduceAndConsume()
    {
        using var cluster = new KafkaMockCluster();
        Assert.Equal(3, cluster.Brokers);
        Assert.Equal(4, cluster.EnsureTopic("probe"));
        using (IProducer<Null, string> producer = new ProducerBuilder<Null, string>(new ProducerConfig { BootstrapServers = cluster.BootstrapServers }).Build())
        {
            producer.Produce(new TopicPartition("probe", 2), new Message<Null, string> { Value = "hello" });
            Assert.Equal(0, producer.Flush(TimeSpan.FromSeconds(10)));
        }

        using IConsumer<Ignore, string> consumer = new ConsumerBuilder<Ignore, string>(new ConsumerConfig
        {
            BootstrapServers = cluster.BootstrapServers,
            GroupId = "probe-group",
            AutoOffsetReset = AutoOffsetReset.Earliest,
        }).Build();
        consumer.Subscribe("probe");
        ConsumeResult<Ignore, string>? result = consumer.Consume(TimeSpan.FromSeconds(20));
        Assert.NotNull(result);
        Assert.Equal(("hello", 2), (result.Message.Value, result.Partition.Value));
        consumer.Close();
    }
}
