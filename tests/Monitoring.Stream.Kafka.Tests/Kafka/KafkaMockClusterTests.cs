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

    [Fact]
    public void SetBrokerDown_PartitionLeader_DeliveryWaitsUntilItIsUp()
    {
        using var cluster = new KafkaMockCluster();
        cluster.EnsureTopic("faulty");
        cluster.SetPartitionLeader("faulty", 0, 2);
        Assert.Equal(2, cluster.LeaderOf("faulty", 0));
        using IProducer<Null, string> producer = new ProducerBuilder<Null, string>(new ProducerConfig { BootstrapServers = cluster.BootstrapServers })
            .SetLogHandler(static (_, _) => { }).Build();
        producer.Produce(new TopicPartition("faulty", 0), new Message<Null, string> { Value = "before" });
        Assert.Equal(0, producer.Flush(TimeSpan.FromSeconds(10)));

        cluster.SetBrokerDown(2);
        producer.Produce(new TopicPartition("faulty", 0), new Message<Null, string> { Value = "during" });
        Assert.Equal(1, producer.Flush(TimeSpan.FromSeconds(2)));
        cluster.SetBrokerUp(2);
        Assert.Equal(0, producer.Flush(TimeSpan.FromSeconds(20)));
    }
}
