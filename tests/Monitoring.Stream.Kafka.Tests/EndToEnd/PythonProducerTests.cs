using System.Text.Json;
using Monitoring.Stream.Kafka.Aggregates;
using Monitoring.Stream.Kafka.Source;
using Monitoring.Stream.Kafka.Tests.Support;
using Monitoring.Stream.Pipeline;
using static Monitoring.Stream.Kafka.Tests.Support.TestPipelines;

namespace Monitoring.Stream.Kafka.Tests.EndToEnd;

/// <summary>
/// The Python producer of docs/wire-format.md (tests/interop/produce_points.py, Debian's python3-msgpack and
/// python3-confluent-kafka) writes points; the engine's statistics of them are exact.
/// </summary>
public class PythonProducerTests
{
    private const int Series = 200;
    private const int PointsPerSeries = 50;
    private static readonly TimeSpan s_timeout = TimeSpan.FromSeconds(60);

    private static double Value(long s, long i) => ((i * 7919 + s * 104729) % 10007) / 16.0 - 100;

    private static long Timestamp(long i) => T0 + (i * 37 % 20000);

    [Fact]
    public async Task PythonProducer_DocumentedScript_EngineSeesExactStatistics()
    {
        using var cluster = new KafkaMockCluster();
        cluster.EnsureTopic("py.points");
        string produced = await PythonRunner.RunAsync("produce_points.py", s_timeout, cluster.BootstrapServers, "py.points", $"{Series}", $"{PointsPerSeries}", $"{T0}", "500");
        using JsonDocument report = JsonDocument.Parse(produced);
        int messages = report.RootElement.GetProperty("messages").GetInt32();
        Assert.Equal(Series * PointsPerSeries, report.RootElement.GetProperty("points").GetInt32());

        var sink = new RowSink();
        await using MetricsPipeline pipeline = Create(sink);
        pipeline.Start();
        await using var source = new KafkaPointSource(pipeline, new KafkaPointSourceOptions { BootstrapServers = cluster.BootstrapServers, Topic = "py.points", GroupId = "g-py" });
        source.Start();
        await Eventually.True(() => source.GetMetrics().Messages == messages, s_timeout, () => source.GetMetrics().ToString());
        await source.StopAsync().WaitAsync(s_timeout);
        await pipeline.StopAsync().WaitAsync(s_timeout);

        KafkaSourceMetrics metrics = source.GetMetrics();
        Assert.Equal((long)Series * PointsPerSeries, metrics.Points);
        Assert.Equal(0, metrics.PointsRefused);
        Assert.Empty(metrics.DeadLettered);

        // Per series and 10 s window: count, sum, min, max exactly as computed here from the same formula.
        var expected = new Dictionary<(string, long), List<double>>();
        for (int s = 0; s < Series; s++)
        {
            for (int i = 0; i < PointsPerSeries; i++)
            {
                (string, long) key = ($"interop_latency_seconds{{group=\"g{s % 16}\",series=\"s{s}\"}}", Timestamp(i) / 10_000 * 10_000);
                (expected.TryGetValue(key, out List<double>? values) ? values : expected[key] = []).Add(Value(s, i));
            }
        }

        var actual = sink.Rows.GroupBy(r => (r.SeriesKey, r.WindowStartUnixMs)).ToDictionary(g => g.Key, g => Assert.Single(g));
        Assert.Equal(expected.Count, actual.Count);
        foreach (((string series, long window), List<double> values) in expected)
        {
            AggregateRow row = actual[(series, window)];
            Assert.Equal((values.Count, values.Sum(), values.Min(), values.Max()), (row.Count, row.Sum, row.Min, row.Max));
        }
    }
}
