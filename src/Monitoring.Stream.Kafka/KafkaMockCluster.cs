using Confluent.Kafka;

namespace Monitoring.Stream.Kafka;

/// <summary>
/// librdkafka's built-in mock cluster, started in this process: real Kafka protocol on loopback TCP, for tests
/// and for trying the engine on one machine. Any Kafka client connects to <see cref="BootstrapServers"/>.
/// </summary>
/// <remarks>
/// The cluster belongs to a client created with <c>test.mock.num.brokers</c>; it lives until <see cref="Dispose"/>.
/// Topics are created on first use with the mock's default of 4 partitions; each partition keeps only its
/// last few megabytes, so consume while producing more than that. Faults (a broker down and up, a partition's
/// leader moved) go through librdkafka's mock API, which Confluent.Kafka does not wrap (<c>LibrdkafkaMock</c>).
/// </remarks>
public sealed class KafkaMockCluster : IDisposable
{
    private readonly IProducer<Null, Null> _owner;
    private readonly IAdminClient _admin;

    /// <summary>Starts a mock cluster of <paramref name="brokers"/> brokers.</summary>
    public KafkaMockCluster(int brokers = 3)
    {
        ArgumentOutOfRangeException.ThrowIfLessThan(brokers, 1);
        var config = new ProducerConfig();
        config.Set("test.mock.num.brokers", brokers.ToString(System.Globalization.CultureInfo.InvariantCulture));
        _owner = new ProducerBuilder<Null, Null>(config).SetLogHandler(static (_, _) => { }).Build();
        _admin = new DependentAdminClientBuilder(_owner.Handle).Build();
        Metadata metadata = _admin.GetMetadata(TimeSpan.FromSeconds(10));
        BootstrapServers = string.Join(",", metadata.Brokers.Select(b => $"{b.Host}:{b.Port}"));
        Brokers = metadata.Brokers.Count;
    }

    /// <summary>The brokers' <c>host:port</c> list, for <c>bootstrap.servers</c>.</summary>
    public string BootstrapServers { get; }

    /// <summary>Brokers in the cluster.</summary>
    public int Brokers { get; }

    // The mock cluster lives as long as its owner; looked up per call so a disposed owner throws, not crashes.
    private IntPtr Native => LibrdkafkaMock.MockCluster(_owner.Handle);

    /// <summary>Creates <paramref name="topic"/> (with the mock's default partitions) if it does not exist, and returns its partition count.</summary>
    public int EnsureTopic(string topic)
    {
        ArgumentException.ThrowIfNullOrWhiteSpace(topic);
        Metadata metadata = _admin.GetMetadata(topic, TimeSpan.FromSeconds(10));
        return metadata.Topics.Single(t => t.Topic == topic).Partitions.Count;
    }

    /// <summary>The id of the broker that leads <paramref name="partition"/> of <paramref name="topic"/> (brokers are numbered from 1).</summary>
    public int LeaderOf(string topic, int partition)
    {
        ArgumentException.ThrowIfNullOrWhiteSpace(topic);
        Metadata metadata = _admin.GetMetadata(topic, TimeSpan.FromSeconds(10));
        return metadata.Topics.Single(t => t.Topic == topic).Partitions.Single(p => p.PartitionId == partition).Leader;
    }

    /// <summary>Takes a broker down: its connections are closed and new ones refused until <see cref="SetBrokerUp"/>; its partitions keep their data and their leader.</summary>
    public void SetBrokerDown(int brokerId) => LibrdkafkaMock.BrokerSetDown(Native, brokerId);

    /// <summary>Brings a broker taken down by <see cref="SetBrokerDown"/> back up.</summary>
    public void SetBrokerUp(int brokerId) => LibrdkafkaMock.BrokerSetUp(Native, brokerId);

    /// <summary>Makes <paramref name="brokerId"/> the leader of a partition (the topic is created if it does not exist).</summary>
    public void SetPartitionLeader(string topic, int partition, int brokerId)
    {
        ArgumentException.ThrowIfNullOrWhiteSpace(topic);
        LibrdkafkaMock.PartitionSetLeader(Native, topic, partition, brokerId);
    }

    /// <summary>Makes <paramref name="brokerId"/> the coordinator of a consumer group, so a test can keep it away from a broker it takes down.</summary>
    public void SetGroupCoordinator(string groupId, int brokerId)
    {
        ArgumentException.ThrowIfNullOrWhiteSpace(groupId);
        LibrdkafkaMock.CoordinatorSet(Native, "group", groupId, brokerId);
    }

    /// <summary>Stops the cluster.</summary>
    public void Dispose()
    {
        _admin.Dispose();
        _owner.Dispose();
    }
}
