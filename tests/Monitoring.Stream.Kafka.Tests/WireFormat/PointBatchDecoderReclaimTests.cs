using Microsoft.Extensions.Time.Testing;
using Monitoring.Stream.Ingest;
using Monitoring.Stream.Kafka.Aggregates;
using Monitoring.Stream.Kafka.Tests.Support;
using Monitoring.Stream.Kafka.WireFormat;
using Monitoring.Stream.Pipeline;

namespace Monitoring.Stream.Kafka.Tests.WireFormat;

public class PointBatchDecoderReclaimTests
{
    private const long T0 = TestPipelines.T0;

    private static byte[] Message(long timestamp)
    {
        var encoder = new PointBatchEncoder();
        encoder.Add("reclaim_total", [new("pod", "a")], 1.0, timestamp);
        encoder.Add("reclaim_total", [new("pod", "b")], 2.0, timestamp);
        return encoder.ToArray();
    }

    private static MetricsPipeline ReclaimingPipeline(FakeTimeProvider time, RowSink sink) => new(
        new MetricsPipelineOptions
        {
            ShardCount = 2,
            WindowSize = TimeSpan.FromSeconds(10),
            AllowedLateness = TimeSpan.Zero,
            TickInterval = TimeSpan.FromSeconds(1),
            SeriesIdleTimeout = TimeSpan.FromSeconds(1),
            TimeProvider = time,
        },
        [sink]);

    /// <summary>Engine seconds, one at a time, the writer flushed and the shards drained after each.</summary>
    private static async Task Tick(MetricsPipeline pipeline, FakeTimeProvider time, PointWriter writer, int seconds)
    {
        for (int s = 0; s < seconds; s++)
        {
            time.Advance(TimeSpan.FromSeconds(1));
            writer.Flush();
            await pipeline.DrainAsync();
        }
    }

    /// <summary>Ticks until the registry has retired <paramref name="series"/> series, failing after <paramref name="seconds"/> engine seconds.</summary>
    private static async Task TickUntilRetired(MetricsPipeline pipeline, FakeTimeProvider time, PointWriter writer, int series, int seconds)
    {
        for (int s = 0; pipeline.Registry.Retired < series; s++)
        {
            Assert.True(s < seconds, $"the idle series were not retired within {seconds} s of engine time: {pipeline.GetMetrics()}");
            await Tick(pipeline, time, writer, 1);
        }
    }

    [Fact]
    public async Task Decode_SameTablesAfterTheirSeriesWereReclaimedAndRetired_ResolvesAgainNothingStale()
    {
        // The decoder caches the ids of the strings and series tables it saw. Once the registry reclaims those
        // series and retires their ids, a message with the same tables must resolve them afresh: a point written
        // through a retired id is refused by its shard as stale.
        var time = new FakeTimeProvider(DateTimeOffset.FromUnixTimeMilliseconds(T0));
        var sink = new RowSink();
        await using MetricsPipeline pipeline = ReclaimingPipeline(time, sink);
        pipeline.Start();
        using PointWriter writer = pipeline.CreateWriter("kafka:test/0");
        var decoder = new PointBatchDecoder(pipeline.Registry);

        Assert.True(decoder.Decode(Message(T0 + 1), writer).Succeeded);
        writer.Flush();
        await TickUntilRetired(pipeline, time, writer, series: 2, seconds: 120);

        long now = time.GetUtcNow().ToUnixTimeMilliseconds();
        Assert.True(decoder.Decode(Message(now), writer).Succeeded);
        writer.Flush();
        await Tick(pipeline, time, writer, seconds: 12);

        PipelineMetrics m = pipeline.GetMetrics();
        Assert.Equal(0, m.StalePoints);
        Assert.Equal(4, m.Accepted);
        Assert.Equal(4, m.EmittedPoints);

        // The stop waits for the sink, which runs behind the shards.
        await pipeline.StopAsync();
        List<AggregateRow> rows = [.. sink.Rows];
        Assert.Equal(2, rows.Count(r => r.WindowStartUnixMs == T0));
        Assert.Equal(2, rows.Count(r => r.WindowStartUnixMs > T0));
        Assert.Equal(["reclaim_total{pod=\"a\"}", "reclaim_total{pod=\"b\"}"], rows.Where(r => r.WindowStartUnixMs > T0).Select(r => r.SeriesKey).Order(StringComparer.Ordinal));
    }

    [Fact]
    public async Task WritePrepared_SeriesReclaimedAndRetiredAfterTheMessageWasPrepared_LookedUpAgainNothingStale()
    {
        // The Kafka source prepares a message (checks it, resolves its series) inside Consume and writes its points
        // afterwards. A consumer thread stalled in between, while one of the message's series is reclaimed and its
        // id retired (the writer, quiet meanwhile, is flushed by the engine), used to write those points through the
        // retired id: refused by the shard as stale. The decoder now writes the message holding the writer's gate
        // and, checking inside it, looks the message's series up again when anything was reclaimed since it was prepared.
        var time = new FakeTimeProvider(DateTimeOffset.FromUnixTimeMilliseconds(T0));
        var sink = new RowSink();
        await using MetricsPipeline pipeline = ReclaimingPipeline(time, sink);
        pipeline.Start();
        using PointWriter writer = pipeline.CreateWriter("kafka:test/0");
        var decoder = new PointBatchDecoder(pipeline.Registry);
        Assert.True(decoder.Decode(Message(T0 + 1), writer).Succeeded);
        writer.Flush();

        // The same tables again, stamped 30 s on (when they will be written): resolved from the decoder's cache.
        long later = T0 + 30_000;
        Assert.True(decoder.Prepare(Message(later)).Succeeded);
        await TickUntilRetired(pipeline, time, writer, series: 2, seconds: 25);

        time.Advance(TimeSpan.FromMilliseconds(later - time.GetUtcNow().ToUnixTimeMilliseconds()));
        Assert.Equal(0, decoder.WritePrepared(writer, []));
        Assert.Equal(1, decoder.LookedUpAgain);
        writer.Flush();
        await Tick(pipeline, time, writer, seconds: 12);

        PipelineMetrics m = pipeline.GetMetrics();
        Assert.Equal(0, m.StalePoints);
        Assert.Equal(4, m.Accepted);
        Assert.Equal(4, m.EmittedPoints);
        await pipeline.StopAsync();
        List<AggregateRow> rows = [.. sink.Rows];
        Assert.Equal(
            ["reclaim_total{pod=\"a\"}", "reclaim_total{pod=\"b\"}"],
            rows.Where(r => r.WindowStartUnixMs > T0).Select(r => r.SeriesKey).Order(StringComparer.Ordinal));
        Assert.Equal([1.0, 2.0], rows.Where(r => r.WindowStartUnixMs > T0).OrderBy(r => r.SeriesKey, StringComparer.Ordinal).Select(r => r.Sum));
    }
}
