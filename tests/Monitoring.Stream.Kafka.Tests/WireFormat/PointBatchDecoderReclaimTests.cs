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

    [Fact]
    public async Task Decode_SameTablesAfterTheirSeriesWereReclaimedAndRetired_ResolvesAgainNothingStale()
    {
        // The decoder caches the ids of the strings and series tables it saw. Once the registry reclaims those
        // series and retires their ids, a message with the same tables must resolve them afresh: a point written
        // through a retired id is refused by its shard as stale.
        var time = new FakeTimeProvider(DateTimeOffset.FromUnixTimeMilliseconds(T0));
        var sink = new RowSink();
        await using var pipeline = new MetricsPipeline(
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
        pipeline.Start();
        using PointWriter writer = pipeline.CreateWriter("kafka:test/0");
        var decoder = new PointBatchDecoder(pipeline.Registry);

        Assert.True(decoder.Decode(Message(T0 + 1), writer).Succeeded);
        writer.Flush();
        for (int s = 0; pipeline.Registry.Retired < 2; s++)
        {
            Assert.True(s < 120, $"the idle series were not retired within 120 s of engine time: {pipeline.GetMetrics()}");
            time.Advance(TimeSpan.FromSeconds(1));
            writer.Flush();
            await pipeline.DrainAsync();
        }

        long now = time.GetUtcNow().ToUnixTimeMilliseconds();
        Assert.True(decoder.Decode(Message(now), writer).Succeeded);
        writer.Flush();
        for (int s = 0; s < 12; s++)
        {
            time.Advance(TimeSpan.FromSeconds(1));
            writer.Flush();
            await pipeline.DrainAsync();
        }

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
}
