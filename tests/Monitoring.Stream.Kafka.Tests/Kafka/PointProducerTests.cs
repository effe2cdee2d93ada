using System.Globalization;
using System.Net;
using System.Net.Sockets;
using Confluent.Kafka;
using MessagePack;
using Microsoft.Extensions.Time.Testing;
using Monitoring.Stream.Kafka.Producer;
using Monitoring.Stream.Kafka.Tests.Support;
using Monitoring.Stream.Kafka.WireFormat;
using Monitoring.Stream.Series;
using static Monitoring.Stream.Kafka.Tests.Support.TestPipelines;

namespace Monitoring.Stream.Kafka.Tests.Kafka;

public class PointProducerTests
{
    private static readonly TimeSpan s_timeout = TimeSpan.FromSeconds(30);

    private sealed record ReadPoint(string Series, long Timestamp, double Value);

    /// <summary>Reads a message with the stock MessagePack deserializer (independent of the encoder), after the decoder accepted it.</summary>
    private static List<ReadPoint> ReadMessage(byte[] value)
    {
        Assert.True(new PointBatchDecoder(new SeriesRegistry()).Validate(value).Succeeded);
        object[] top = (object[])MessagePackSerializer.Deserialize<object>(value)!;
        Assert.Equal(1L, Convert.ToInt64(top[0], CultureInfo.InvariantCulture));
        long baseTs = Convert.ToInt64(top[1], CultureInfo.InvariantCulture);
        string[] strings = [.. ((object[])top[2]).Cast<string>()];
        string[] series = [.. ((object[])top[3]).Select(e =>
        {
            int[] indexes = [.. ((object[])e).Select(i => Convert.ToInt32(i, CultureInfo.InvariantCulture))];
            return strings[indexes[0]] + string.Concat(indexes.Skip(1).Chunk(2).Select(l => $",{strings[l[0]]}={strings[l[1]]}"));
        })];
        object[] flat = (object[])top[4];
        var points = new List<ReadPoint>();
        for (int i = 0; i < flat.Length; i += 3)
        {
            points.Add(new ReadPoint(
                series[Convert.ToInt32(flat[i], CultureInfo.InvariantCulture)],
                baseTs + Convert.ToInt64(flat[i + 1], CultureInfo.InvariantCulture),
                Convert.ToDouble(flat[i + 2], CultureInfo.InvariantCulture)));
        }

        return points;
    }

    private static int FreePort()
    {
        using var listener = new TcpListener(IPAddress.Loopback, 0);
        listener.Start();
        return ((IPEndPoint)listener.LocalEndpoint).Port;
    }

    [Fact]
    public void Add_ManySeries_ReadBackExactlyAndEachSeriesInItsOnePartition()
    {
        using var cluster = new KafkaMockCluster();
        var expected = new List<ReadPoint>();
        PointProducerMetrics metrics;
        using (var producer = new PointProducer(new PointProducerOptions { BootstrapServers = cluster.BootstrapServers, Topic = "produced", MaxPointsPerMessage = 100 }))
        {
            Assert.Equal(4, producer.Partitions);
            ProducerSeries[] series = [.. Enumerable.Range(0, 50).Select(s => producer.GetSeries("jobs_seconds", [new("zone", "z" + (s % 3)), new("job", "j" + s), new("empty", "")]))];
            for (int i = 0; i < 2000; i++)
            {
                ProducerSeries s = series[(i * 7) % 50];
                double value = (i * 0.25) - 100;
                producer.Add(s, value, T0 + (i % 700));
                expected.Add(new ReadPoint(s.Metric + string.Concat(s.Labels.Select(l => $",{l.Name}={l.Value}")), T0 + (i % 700), value));
            }

            Assert.Equal(0, producer.Flush(s_timeout));
            metrics = producer.GetMetrics();
        }

        Assert.Equal((2000L, 2000L, 0L, 0L, 0L), (metrics.PointsAdded, metrics.PointsDelivered, metrics.PointsFailed, metrics.DeliveryFailures, metrics.PointsBuffered));
        Assert.Equal(metrics.MessagesProduced, metrics.MessagesDelivered);
        List<ConsumeResult<byte[]?, byte[]?>> messages = KafkaTestClient.ReadAll(cluster.BootstrapServers, "produced", (int)metrics.MessagesDelivered, s_timeout);
        Assert.Equal(metrics.BytesDelivered, messages.Sum(m => m.Message.Value!.Length));

        var partitionsOfSeries = new Dictionary<string, HashSet<int>>();
        var read = new List<ReadPoint>();
        foreach (ConsumeResult<byte[]?, byte[]?> m in messages)
        {
            List<ReadPoint> points = ReadMessage(m.Message.Value!);
            Assert.InRange(points.Count, 1, 100);
            read.AddRange(points);
            foreach (ReadPoint p in points)
            {
                (partitionsOfSeries.TryGetValue(p.Series, out HashSet<int>? set) ? set : partitionsOfSeries[p.Series] = []).Add(m.Partition.Value);
            }
        }

        // Exactly the points added (order within a series kept), each series in one partition, the series spread over several.
        Assert.Equal(expected.OrderBy(p => p.Series, StringComparer.Ordinal).ToList(), read.OrderBy(p => p.Series, StringComparer.Ordinal).ToList());
        Assert.Equal(50, partitionsOfSeries.Count);
        Assert.All(partitionsOfSeries, kv => Assert.Single(kv.Value));
        Assert.True(partitionsOfSeries.Values.Select(v => v.Single()).Distinct().Count() > 1);
    }

    [Fact]
    public void Add_SmallByteLimit_EveryMessageWithinIt()
    {
        using var cluster = new KafkaMockCluster();
        int delivered;
        using (var producer = new PointProducer(new PointProducerOptions { BootstrapServers = cluster.BootstrapServers, Topic = "small", Partitions = 1, MaxMessageBytes = 2048 }))
        {
            for (int i = 0; i < 1000; i++)
            {
                producer.Add("queue_depth", [new("queue", "q" + (i % 40) + new string('x', 30))], i * 1.5, T0 + i);
            }

            Assert.Equal(0, producer.Flush(s_timeout));
            Assert.Equal(1000, producer.GetMetrics().PointsDelivered);
            delivered = (int)producer.GetMetrics().MessagesDelivered;
        }

        List<ConsumeResult<byte[]?, byte[]?>> messages = KafkaTestClient.ReadAll(cluster.BootstrapServers, "small", delivered, s_timeout);
        Assert.True(messages.Count > 10, $"{messages.Count} messages");
        Assert.All(messages, m => Assert.InRange(m.Message.Value!.Length, 1, 2048));
        Assert.Equal(1000, messages.Sum(m => ReadMessage(m.Message.Value!).Count));
    }

    [Fact]
    public async Task Add_IdleProducer_BatchSentOnceItsLingerPassed()
    {
        using var cluster = new KafkaMockCluster();
        var time = new FakeTimeProvider(DateTimeOffset.FromUnixTimeMilliseconds(T0));
        using var producer = new PointProducer(new PointProducerOptions
        {
            BootstrapServers = cluster.BootstrapServers,
            Topic = "linger",
            Linger = TimeSpan.FromSeconds(1),
            TimeProvider = time,
        });
        ProducerSeries series = producer.GetSeries("temperature_celsius", [new("room", "lab")]);
        producer.Add(series, 21.5, T0);
        producer.Add(series, 22.0, T0 + 1000);
        producer.Add(series, -3.25, T0 + 2000);

        time.Advance(TimeSpan.FromMilliseconds(600));
        Assert.Equal((0L, 3L), (producer.GetMetrics().MessagesProduced, producer.GetMetrics().PointsBuffered));

        // Nobody adds or flushes: the linger timer alone sends the batch.
        time.Advance(TimeSpan.FromMilliseconds(600));
        Assert.Equal((1L, 0L), (producer.GetMetrics().MessagesProduced, producer.GetMetrics().PointsBuffered));
        await Eventually.True(() => producer.GetMetrics().MessagesDelivered == 1, s_timeout, () => producer.GetMetrics().ToString());
        ConsumeResult<byte[]?, byte[]?> message = Assert.Single(KafkaTestClient.ReadAll(cluster.BootstrapServers, "linger", 1, s_timeout));
        Assert.Equal(series.Partition, message.Partition.Value);
        Assert.Equal([21.5, 22.0, -3.25], ReadMessage(message.Message.Value!).Select(p => p.Value));
    }

    [Fact]
    public void Flush_UnreachableBroker_DeliveryFailuresCountedWithTheirPoints()
    {
        var options = new PointProducerOptions { BootstrapServers = "127.0.0.1:" + FreePort(), Topic = "nowhere", Partitions = 2, MaxPointsPerMessage = 10 };
        options.ClientSettings["message.timeout.ms"] = "1000";
        using var producer = new PointProducer(options);
        for (int i = 0; i < 25; i++)
        {
            producer.Add("up", [new("instance", "i" + i)], 1, T0);
        }

        Assert.Equal(0, producer.Flush(s_timeout));
        PointProducerMetrics metrics = producer.GetMetrics();
        Assert.Equal((25L, 0L, 0L), (metrics.PointsFailed, metrics.PointsDelivered, metrics.MessagesDelivered));
        Assert.Equal(metrics.MessagesProduced, metrics.DeliveryFailures);
        Assert.True(metrics.DeliveryFailures >= 3, metrics.ToString());
        Assert.NotNull(metrics.LastError);
    }

    [Fact]
    public void Add_AfterDispose_Throws()
    {
        var options = new PointProducerOptions { BootstrapServers = "127.0.0.1:" + FreePort(), Topic = "t", Partitions = 1, DisposeTimeout = TimeSpan.Zero };
        var producer = new PointProducer(options);
        ProducerSeries series = producer.GetSeries("up", []);
        producer.Dispose();
        Assert.Throws<ObjectDisposedException>(() => producer.Add(series, 1, T0));
    }

    [Fact]
    public void PartitionOf_SameSeriesAnyLabelOrder_SamePartition()
    {
        var options = new PointProducerOptions { BootstrapServers = "127.0.0.1:" + FreePort(), Topic = "t", Partitions = 16, DisposeTimeout = TimeSpan.Zero };
        using var producer = new PointProducer(options);
        ProducerSeries a = producer.GetSeries("http_seconds", [new("route", "/a"), new("method", "GET")]);
        ProducerSeries b = producer.GetSeries("http_seconds", [new("method", "GET"), new("route", "/a"), new("zone", "")]);
        Assert.Equal(a.Partition, b.Partition);
        Assert.Equal(a.Labels, b.Labels);
        Assert.Equal(PointProducer.PartitionOf("http_seconds", [new("method", "GET"), new("route", "/a")], 16), a.Partition);
    }
}
