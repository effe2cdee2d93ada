using System.Buffers;
using System.Text;
using Confluent.Kafka;
using MessagePack;
using Monitoring.Stream.Kafka.Source;
using Monitoring.Stream.Kafka.Tests.Support;
using Monitoring.Stream.Kafka.WireFormat;
using Monitoring.Stream.Model;
using Monitoring.Stream.Pipeline;
using static Monitoring.Stream.Kafka.Tests.Support.TestPipelines;

namespace Monitoring.Stream.Kafka.Tests.Kafka;

/// <summary>
/// The poison cases not covered by <c>KafkaPointSourceTests</c> (which another change owns at the
/// moment), through the mock cluster: NaN values inside a good message, and a million points in one message.
/// </summary>
public class KafkaPointSourcePoisonTests
{
    private static readonly TimeSpan s_timeout = TimeSpan.FromSeconds(60);

    private static byte[] Good(int points, int first) =>
        Enumerable.Range(0, points).Aggregate(new PointBatchEncoder(), (e, i) =>
        {
            e.Add("orders_total", [new("k", (i % 5).ToString(System.Globalization.CultureInfo.InvariantCulture))], first + i, T0 + i);
            return e;
        }).ToArray();

    /// <summary>A well-formed message of a million points (3 bytes each, 3 MB), over the 200,000-point limit.</summary>
    private static byte[] MillionPoints()
    {
        var buffer = new ArrayBufferWriter<byte>(3_100_000);
        var writer = new MessagePackWriter(buffer);
        writer.WriteArrayHeader(5);
        writer.Write(1);
        writer.Write(T0);
        writer.WriteArrayHeader(1);
        writer.Write("orders_total");
        writer.WriteArrayHeader(1);
        writer.WriteArrayHeader(1);
        writer.Write(0);
        writer.WriteArrayHeader(3_000_000);
        for (int i = 0; i < 3_000_000; i++)
        {
            writer.Write(0);
        }

        writer.Flush();
        return buffer.WrittenSpan.ToArray();
    }

    [Fact]
    public async Task Start_NaNValuesAndAMillionPointMessage_NaNsRefusedByReasonMillionDeadLetteredGoodOnesAggregated()
    {
        using var cluster = new KafkaMockCluster();
        cluster.EnsureTopic("poison");
        var withNaN = new PointBatchEncoder();
        for (int i = 0; i < 10; i++)
        {
            withNaN.Add("orders_total", [new("k", "nan")], i % 2 == 0 ? double.NaN : i, T0 + i);
        }

        byte[] million = MillionPoints();
        Assert.Equal(PointDecodeError.TooManyPoints, new PointBatchDecoder(new Series.SeriesRegistry()).Validate(million).Error);
        KafkaTestClient.Produce(cluster.BootstrapServers, "poison", [(0, Good(50, 0)), (0, withNaN.ToArray()), (0, million), (0, Good(50, 100))]);

        var sink = new RowSink();
        await using MetricsPipeline pipeline = Create(sink);
        pipeline.Start();
        await using var source = new KafkaPointSource(pipeline, new KafkaPointSourceOptions { BootstrapServers = cluster.BootstrapServers, Topic = "poison", GroupId = "g-poison", CommitInterval = TimeSpan.FromMilliseconds(200) });
        source.Start();
        await Eventually.True(() => source.GetMetrics().Messages == 4 && pipeline.GetMetrics().Pending == 0, s_timeout, () => source.GetMetrics().ToString());
        await source.StopAsync().WaitAsync(s_timeout);
        await pipeline.StopAsync().WaitAsync(s_timeout);

        KafkaSourceMetrics metrics = source.GetMetrics();
        Assert.Equal(50 + 5 + 50, sink.Rows.Sum(r => r.Count));
        Assert.Equal(5, metrics.PointsRefused);
        Assert.Equal(5, pipeline.GetMetrics().RejectedByReason[RejectReason.NotANumber]);
        Assert.Equal(1, Assert.Single(metrics.DeadLettered, kv => kv.Value > 0).Value);
        Assert.Equal(1, metrics.DeadLettered[PointDecodeError.TooManyPoints]);

        ConsumeResult<byte[]?, byte[]?> dead = Assert.Single(KafkaTestClient.ReadAll(cluster.BootstrapServers, "poison.dlq", 1, s_timeout));
        Assert.Equal("TooManyPoints", Encoding.UTF8.GetString(dead.Message.Headers.GetLastBytes(DeadLetterHeaders.Reason)));
        Assert.Equal("2", Encoding.UTF8.GetString(dead.Message.Headers.GetLastBytes(DeadLetterHeaders.SourceOffset)));
        Assert.Equal(million.Length, dead.Message.Value!.Length);
        Assert.Equal([4, -1001, -1001, -1001], KafkaTestClient.Committed(cluster.BootstrapServers, "g-poison", "poison", 4));
    }
}
