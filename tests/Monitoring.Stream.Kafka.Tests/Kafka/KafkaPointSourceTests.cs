using System.Text;
using Confluent.Kafka;
using Monitoring.Stream.Kafka.Source;
using Monitoring.Stream.Kafka.Tests.Support;
using Monitoring.Stream.Kafka.WireFormat;
using Monitoring.Stream.Pipeline;
using static Monitoring.Stream.Kafka.Tests.Support.TestPipelines;

namespace Monitoring.Stream.Kafka.Tests.Kafka;

public class KafkaPointSourceTests
{
    private static readonly TimeSpan s_timeout = TimeSpan.FromSeconds(60);

    private static byte[] Good(int partition, int message, int points)
    {
        var encoder = new PointBatchEncoder();
        for (int i = 0; i < points; i++)
        {
            encoder.Add("orders_total", [new("partition", partition.ToString(System.Globalization.CultureInfo.InvariantCulture)), new("k", (i % 5).ToString(System.Globalization.CultureInfo.InvariantCulture))], message + i, T0 + (i * 10));
        }

        return encoder.ToArray();
    }

    /// <summary>Source settings for the mock cluster: quick commits, frequent heartbeats, a 6 s session.</summary>
    internal static KafkaPointSourceOptions Options(KafkaMockCluster cluster, string topic, string group)
    {
        var options = new KafkaPointSourceOptions
        {
            BootstrapServers = cluster.BootstrapServers,
            Topic = topic,
            GroupId = group,
            CommitInterval = TimeSpan.FromMilliseconds(200),
            RevokeTimeout = TimeSpan.FromSeconds(10),
        };
        // Rebalances start from a heartbeat: frequent ones keep the tests' rebalances short.
        options.ClientSettings["heartbeat.interval.ms"] = "100";
        options.ClientSettings["session.timeout.ms"] = "6000";
        return options;
    }

    [Fact]
    public async Task Start_GoodAndPoisonMessages_AggregatesGoodOnesAndDeadLettersEachBadOneWithItsReason()
    {
        using var cluster = new KafkaMockCluster();
        cluster.EnsureTopic("points");
        byte[] good = Good(0, 0, 50);
        var poison = new (string Name, byte[] Bytes, PointDecodeError Reason)[]
        {
            ("empty", [], PointDecodeError.Empty),
            ("truncated", good[..^4], PointDecodeError.Truncated),
            ("wrong version", [0x95, 0x02, 0x00, 0x90, 0x90, 0x90], PointDecodeError.UnsupportedVersion),
            ("random", Encoding.ASCII.GetBytes("this is not MessagePack"), PointDecodeError.UnexpectedType),
            ("deep", [0x96, 0x01, 0x00, 0x90, 0x90, 0x90, .. Enumerable.Repeat((byte)0x91, 10_000), 0xc0], PointDecodeError.NestingTooDeep),
            ("2 GB string", [0x95, 0x01, 0x00, 0x91, 0xdb, 0x7f, 0xff, 0xff, 0xff, 0x61], PointDecodeError.StringTooLong),
            ("4 G points", [0x95, 0x01, 0x00, 0x90, 0x90, 0xdd, 0xff, 0xff, 0xff, 0xff], PointDecodeError.TooManyPoints),
        };

        // Each poison message sits between two good ones on partition 1; the other partitions carry good ones only.
        var messages = new List<(int, byte[])>();
        int goodMessages = 0;
        foreach ((string _, byte[] bytes, PointDecodeError _) in poison)
        {
            messages.Add((1, Good(1, goodMessages++, 50)));
            messages.Add((1, bytes));
        }

        messages.Add((1, Good(1, goodMessages++, 50)));
        for (int p = 0; p < 4; p++)
        {
            if (p != 1)
            {
                messages.Add((p, Good(p, goodMessages++, 50)));
            }
        }

        KafkaTestClient.Produce(cluster.BootstrapServers, "points", messages);

        var sink = new RowSink();
        await using MetricsPipeline pipeline = Create(sink);
        pipeline.Start();
        await using var source = new KafkaPointSource(pipeline, Options(cluster, "points", "g1"));
        source.Start();
        await Eventually.True(() => source.GetMetrics().Messages == messages.Count && pipeline.GetMetrics().Pending == 0, s_timeout, () => source.GetMetrics().ToString());
        await pipeline.StopAsync();
        await source.StopAsync();

        Assert.Equal(goodMessages * 50, sink.Rows.Sum(r => r.Count));
        KafkaSourceMetrics metrics = source.GetMetrics();
        foreach ((string name, _, PointDecodeError reason) in poison)
        {
            Assert.True(metrics.DeadLettered.GetValueOrDefault(reason) == 1, name + ": " + string.Join(",", metrics.DeadLettered));
        }

        List<ConsumeResult<byte[]?, byte[]?>> dead = KafkaTestClient.ReadAll(cluster.BootstrapServers, "points.dlq", poison.Length, s_timeout);
        string Header(ConsumeResult<byte[]?, byte[]?> r, string key) => Encoding.UTF8.GetString(r.Message.Headers.GetLastBytes(key));
        Assert.Equal(poison.Select(p => p.Reason.ToString()).Order(), dead.Select(d => Header(d, DeadLetterHeaders.Reason)).Order());
        foreach (ConsumeResult<byte[]?, byte[]?> d in dead)
        {
            Assert.Equal("points", Header(d, DeadLetterHeaders.SourceTopic));
            Assert.Equal("1", Header(d, DeadLetterHeaders.SourcePartition));
            int offset = int.Parse(Header(d, DeadLetterHeaders.SourceOffset), System.Globalization.CultureInfo.InvariantCulture);
            Assert.Equal(1, offset % 2);
            Assert.Equal(poison[offset / 2].Bytes, d.Message.Value ?? []);
        }

        // Everything was acknowledged (the pipeline stopped gracefully), so every partition is committed to its end.
        Assert.Equal([1, 2 * poison.Length + 1, 1, 1], KafkaTestClient.Committed(cluster.BootstrapServers, "g1", "points", 4));
    }

    [Fact]
    public async Task StopAsync_PipelineRunning_ClosesOpenWindowsAndCommitsEveryPartitionToItsEnd()
    {
        using var cluster = new KafkaMockCluster();
        cluster.EnsureTopic("stop");
        var messages = Enumerable.Range(0, 12).Select(m => (m % 4, Good(m % 4, m, 20))).ToList();
        KafkaTestClient.Produce(cluster.BootstrapServers, "stop", messages);
        var sink = new RowSink();
        await using MetricsPipeline pipeline = Create(sink);
        pipeline.Start();
        var source = new KafkaPointSource(pipeline, Options(cluster, "stop", "g-stop"));
        source.Start();
        await Eventually.True(() => source.GetMetrics().Messages == messages.Count, s_timeout, () => source.GetMetrics().ToString());

        // The windows are still open (the fake clock stands still): stopping the source closes them early.
        await source.StopAsync();
        Assert.Equal(12 * 20, sink.Rows.Sum(r => r.Count));
        Assert.Equal([3, 3, 3, 3], KafkaTestClient.Committed(cluster.BootstrapServers, "g-stop", "stop", 4));
        Assert.Equal(0, source.GetMetrics().RevokeTimeouts);
        Assert.Equal(0, source.GetMetrics().CloseTimeouts);
        await pipeline.StopAsync();
    }

    [Fact]
    public async Task Start_SecondInstanceJoinsMidStream_EveryPointAggregatedAtLeastOnceDuplicatesExactlyTheReReadMessages()
    {
        using var cluster = new KafkaMockCluster();
        cluster.EnsureTopic("rebalance");
        var sinkA = new RowSink();
        var sinkB = new RowSink();
        await using MetricsPipeline a = Create(sinkA, instance: "a");
        await using MetricsPipeline b = Create(sinkB, instance: "b");
        a.Start();
        b.Start();
        await using var sourceA = new KafkaPointSource(a, Options(cluster, "rebalance", "g-re"));
        await using var sourceB = new KafkaPointSource(b, Options(cluster, "rebalance", "g-re"));
        sourceA.Start();
        KafkaTestClient.Produce(cluster.BootstrapServers, "rebalance", Enumerable.Range(0, 40).Select(m => (m % 4, Good(m % 4, m, 25))));
        await Eventually.True(() => sourceA.GetMetrics().Messages == 40, s_timeout, () => sourceA.GetMetrics().ToString());

        // B joins: A's partitions are revoked (windows closed, acknowledged, committed), then split between them.
        sourceB.Start();
        await Eventually.True(() => sourceB.GetMetrics().AssignedPartitions > 0 && sourceA.GetMetrics().AssignedPartitions > 0, s_timeout, () => sourceA.GetMetrics() + " / " + sourceB.GetMetrics());
        KafkaTestClient.Produce(cluster.BootstrapServers, "rebalance", Enumerable.Range(40, 40).Select(m => (m % 4, Good(m % 4, m, 25))));
        await Eventually.True(() => sourceA.GetMetrics().Messages + sourceB.GetMetrics().Messages >= 80, s_timeout, () => sourceA.GetMetrics() + " / " + sourceB.GetMetrics());
        await sourceA.StopAsync();
        await sourceB.StopAsync();
        await a.StopAsync();
        await b.StopAsync();
        long[] committed = KafkaTestClient.Committed(cluster.BootstrapServers, "g-re", "rebalance", 4);
        Assert.All(committed, c => Assert.True(c is -1001 or (>= 0 and <= 20), string.Join(",", committed)));

        // Every point is in the aggregates at least once. The revoked partitions' windows were closed and
        // acknowledged, but the mock cluster refuses a commit during an eager rebalance (REBALANCE_IN_PROGRESS,
        // counted in CommitFailures), so their new owner re-read from the last commit: the duplicates are
        // exactly the points of the messages read twice, less those an instance skipped because it had held the
        // partition itself and every sink had them (SkippedMessages).
        long read = sourceA.GetMetrics().Messages + sourceB.GetMetrics().Messages;
        long skipped = sourceA.GetMetrics().SkippedMessages + sourceB.GetMetrics().SkippedMessages;
        long aggregated = sinkA.Rows.Sum(r => r.Count) + sinkB.Rows.Sum(r => r.Count);
        Assert.True(read >= 80);
        Assert.Equal(skipped * 25, sourceA.GetMetrics().SkippedPoints + sourceB.GetMetrics().SkippedPoints);
        Assert.Equal(80 * 25, aggregated - ((read - skipped - 80) * 25));
        Assert.Equal(0, sourceA.GetMetrics().RevokeTimeouts + sourceB.GetMetrics().RevokeTimeouts);

        // Both left the group cleanly: the assignment is given up before the close (a revoke callback inside
        // librdkafka's close can block for ever), so no stop had to give up waiting for it.
        Assert.Equal(0, sourceA.GetMetrics().CloseTimeouts + sourceB.GetMetrics().CloseTimeouts);
        Assert.True(sourceA.GetMetrics().Revocations >= 1);

        // A restart of the group resumes from the committed offsets: it reads exactly the rest.
        long rest = 80 - committed.Sum(c => Math.Max(c, 0));
        var sinkC = new RowSink();
        await using MetricsPipeline c = Create(sinkC, instance: "c");
        c.Start();
        await using var sourceC = new KafkaPointSource(c, Options(cluster, "rebalance", "g-re"));
        sourceC.Start();
        await Eventually.True(() => sourceC.GetMetrics().Messages >= rest, s_timeout, () => sourceC.GetMetrics().ToString());
        await sourceC.StopAsync();
        Assert.Equal(rest, sourceC.GetMetrics().Messages);
        Assert.Equal([20, 20, 20, 20], KafkaTestClient.Committed(cluster.BootstrapServers, "g-re", "rebalance", 4));
    }
}
