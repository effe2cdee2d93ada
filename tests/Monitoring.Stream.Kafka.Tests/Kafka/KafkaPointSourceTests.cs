using System.Text;
using Confluent.Kafka;
using Microsoft.Extensions.Time.Testing;
using Monitoring.Stream.Kafka.Source;
using Monitoring.Stream.Kafka.Tests.Support;
using Monitoring.Stream.Kafka.WireFormat;
using Monitoring.Stream.Pipeline;
using Monitoring.Stream.Sinks;
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

    private static KafkaPointSourceOptions Options(KafkaMockCluster cluster, string topic, string group) => new()
    {
        BootstrapServers = cluster.BootstrapServers,
        Topic = topic,
        GroupId = group,
        CommitInterval = TimeSpan.FromMilliseconds(200),
        RevokeTimeout = TimeSpan.FromSeconds(10),
    };

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
    public async Task Start_ShardsBlockedBySlowSink_PausesPartitionsThenResumesAndLosesNothing()
    {
        using var cluster = new KafkaMockCluster();
        cluster.EnsureTopic("slow");
        var gate = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
        var sink = new GatedSink(gate.Task);
        // Points across many windows, so windows close while the sink is blocked and the shards back up behind it.
        const int Messages = 400;
        var messages = new List<(int, byte[])>();
        for (int m = 0; m < Messages; m++)
        {
            var encoder = new PointBatchEncoder();
            for (int i = 0; i < 100; i++)
            {
                encoder.Add("slow_metric", [new("s", (i % 10).ToString(System.Globalization.CultureInfo.InvariantCulture))], i, T0 + (m * 1000L) + i);
            }

            // One partition, so event time only moves forward and nothing is late.
            messages.Add((0, encoder.ToArray()));
        }

        KafkaTestClient.Produce(cluster.BootstrapServers, "slow", messages);
        var time = new FakeTimeProvider(DateTimeOffset.FromUnixTimeMilliseconds(T0 + (Messages * 1000L)));
        await using MetricsPipeline pipeline = new(
            new MetricsPipelineOptions { ShardCount = 2, ShardQueueBatches = 4, BatchSize = 64, TimeProvider = time, AllowedLateness = TimeSpan.Zero, Instance = "slow" },
            [sink],
            new SinkOptions { QueueCapacity = 1 });
        pipeline.Start();
        KafkaPointSourceOptions options = Options(cluster, "slow", "g2");
        await using var source = new KafkaPointSource(pipeline, options);
        source.Start();
        await Eventually.True(() => source.GetMetrics().Paused, s_timeout, () => source.GetMetrics().ToString());
        Assert.True(source.GetMetrics().Messages < Messages, "paused before reading everything");
        gate.SetResult();
        await Eventually.True(() => source.GetMetrics().Messages == Messages && pipeline.GetMetrics().Pending == 0, s_timeout, () => source.GetMetrics().ToString());
        await pipeline.StopAsync();
        await source.StopAsync();
        KafkaSourceMetrics metrics = source.GetMetrics();
        Assert.False(metrics.Paused);
        Assert.True(metrics.Pauses >= 1);
        Assert.Equal(Messages * 100L, sink.Points);
        Assert.Equal((0L, 0L), (pipeline.GetMetrics().Dropped, pipeline.GetMetrics().Late));
    }

    private sealed class GatedSink(Task gate) : IWindowSink
    {
        private long _points;

        public string Name => "gated";

        public long Points => Interlocked.Read(ref _points);

        public async ValueTask WriteAsync(WindowBatch batch, CancellationToken cancellationToken)
        {
            await gate.WaitAsync(cancellationToken);
            Interlocked.Add(ref _points, batch.Points);
        }

        public ValueTask CompleteAsync(CancellationToken cancellationToken) => ValueTask.CompletedTask;

        public ValueTask DisposeAsync() => ValueTask.CompletedTask;
    }
}
