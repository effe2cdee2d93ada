using Monitoring.Stream.Kafka.Source;
using Monitoring.Stream.Kafka.Tests.Support;
using Monitoring.Stream.Kafka.WireFormat;
using Monitoring.Stream.Pipeline;
using static Monitoring.Stream.Kafka.Tests.Support.TestPipelines;

namespace Monitoring.Stream.Kafka.Tests.Kafka;

/// <summary>
/// <see cref="KafkaPointSource"/> under broker faults injected through librdkafka's mock API (a class of its
/// own beside <c>KafkaPointSourceTests</c>, which another change owns at the moment).
/// </summary>
public class KafkaPointSourceBrokerFaultTests
{
    private static readonly TimeSpan s_timeout = TimeSpan.FromSeconds(60);

    private static byte[] Message(int partition, int message) =>
        Enumerable.Range(0, 25).Aggregate(new PointBatchEncoder(), (e, i) =>
        {
            e.Add("orders_total", [new("partition", partition.ToString(System.Globalization.CultureInfo.InvariantCulture)), new("k", (i % 5).ToString(System.Globalization.CultureInfo.InvariantCulture))], message + i, T0 + i);
            return e;
        }).ToArray();

    [Fact]
    public async Task Start_PartitionLeaderDownThenUp_NothingLostAndTheStallVisibleInMetrics()
    {
        using var cluster = new KafkaMockCluster();
        cluster.EnsureTopic("faults");

        // Broker 2 leads partitions 0 and 1, broker 3 the others; the group's coordinator is broker 1, so taking
        // broker 2 down stalls two partitions' fetches and leaves the group (and its assignment) alone.
        cluster.SetGroupCoordinator("g-faults", 1);
        for (int p = 0; p < 4; p++)
        {
            cluster.SetPartitionLeader("faults", p, p < 2 ? 2 : 3);
        }

        Assert.Equal(2, cluster.LeaderOf("faults", 0));
        var sink = new RowSink();
        await using MetricsPipeline pipeline = Create(sink);
        pipeline.Start();
        var options = new KafkaPointSourceOptions
        {
            BootstrapServers = cluster.BootstrapServers,
            Topic = "faults",
            GroupId = "g-faults",
            CommitInterval = TimeSpan.FromMilliseconds(200),
            RevokeTimeout = TimeSpan.FromSeconds(10),
        };
        options.ClientSettings["reconnect.backoff.max.ms"] = "200";
        await using var source = new KafkaPointSource(pipeline, options);
        source.Start();
        KafkaTestClient.Produce(cluster.BootstrapServers, "faults", Enumerable.Range(0, 40).Select(m => (m % 4, Message(m % 4, m))));
        await Eventually.True(() => source.GetMetrics().Messages == 40, s_timeout, () => source.GetMetrics().ToString());
        Assert.Equal(0, source.GetMetrics().ConsumerErrors);

        // The leader goes down while a second round is produced to every partition: partitions 2 and 3 go on,
        // 0 and 1 wait (the producer retries too), and the source's metrics show it.
        cluster.SetBrokerDown(2);
        Task produced = Task.Run(() => KafkaTestClient.Produce(cluster.BootstrapServers, "faults", Enumerable.Range(40, 40).Select(m => (m % 4, Message(m % 4, m)))));
        await Eventually.True(
            () => source.GetMetrics() is { Messages: 60, ConsumerErrors: > 0 } m && m.SinceLastMessage[0] > TimeSpan.FromSeconds(2),
            s_timeout,
            () => source.GetMetrics().ToString());
        KafkaSourceMetrics stalled = source.GetMetrics();
        Assert.True(stalled.SinceLastMessage[1] > TimeSpan.FromSeconds(2));
        Assert.True(stalled.SinceLastMessage[2] < stalled.SinceLastMessage[0], string.Join(", ", stalled.SinceLastMessage));
        Assert.NotNull(stalled.LastConsumerError);
        Assert.Equal(1, stalled.Assignments);

        cluster.SetBrokerUp(2);
        await produced.WaitAsync(s_timeout);
        await Eventually.True(() => source.GetMetrics().Messages == 80, s_timeout, () => source.GetMetrics().ToString());
        Assert.True(source.GetMetrics().SinceLastMessage[0] < TimeSpan.FromSeconds(30));
        await source.StopAsync().WaitAsync(s_timeout);
        await pipeline.StopAsync().WaitAsync(s_timeout);

        // Nothing lost, nothing twice: every message read once (no rebalance), every point in the sink.
        Assert.Equal(80 * 25, sink.Rows.Sum(r => r.Count));
        Assert.Equal((80L, 1L, 0L), (source.GetMetrics().Messages, source.GetMetrics().Assignments, source.GetMetrics().Revocations - 1));
        Assert.Equal([20, 20, 20, 20], KafkaTestClient.Committed(cluster.BootstrapServers, "g-faults", "faults", 4));
    }
}
