using BenchmarkDotNet.Attributes;
using Monitoring.Stream.Hosting.Queries;
using Monitoring.Stream.Ingest;
using Monitoring.Stream.Model;
using Monitoring.Stream.Pipeline;
using Monitoring.Stream.Sinks;

namespace Monitoring.Stream.Hosting.Benchmarks;

/// <summary>
/// The case of issue 10 answered from memory alone: a one-hour statistics query over one metric with
/// 1,000 series and one-minute windows (60 windows per series, 60,000 window aggregates in the index).
/// </summary>
[MemoryDiagnoser]
public class RecentStatisticsQueryBenchmarks
{
    private const string Metric = "http_server_request_duration_seconds";
    private MetricStatisticsService _queries = null!;
    private LabelSet _oneSeries = LabelSet.Empty;
    private LabelSet _status500 = LabelSet.Empty;

    [Params(1_000)]
    public int Series { get; set; }

    /// <summary>Points per series and window.</summary>
    [Params(10)]
    public int PointsPerWindow { get; set; }

    [GlobalSetup]
    public void Setup()
    {
        var index = new RecentWindowIndex(new RecentWindowIndexOptions { Retention = TimeSpan.FromHours(2), MaxAggregates = 1_000_000 });
        long now = DateTimeOffset.UtcNow.ToUnixTimeMilliseconds();
        long start = now - 3_600_000;
        var options = new MetricsPipelineOptions { WindowSize = TimeSpan.FromMinutes(1), MaxPointAge = TimeSpan.FromHours(2), Instance = "bench" };
        var pipeline = new MetricsPipeline(options, [(IWindowSink)index]);
        pipeline.Start();
        // Setup data goes through a waiting writer, so that none of it is dropped.
        using (PointWriter writer = pipeline.CreateWriter("bench", BackpressureMode.Wait))
        {
            SeriesId[] ids = [.. Enumerable.Range(0, Series).Select(i => pipeline.Registry.GetOrAdd(Metric,
                new Label("method", i % 2 == 0 ? "GET" : "POST"), new Label("route", "/api/items/" + i), new Label("status", i % 7 == 0 ? "500" : "200")))];
            var random = new Random(1);
            long step = 60_000 / PointsPerWindow;
            for (long ts = start; ts < now; ts += step)
            {
                foreach (SeriesId id in ids)
                {
                    // Log-normal latencies around 50 ms: a realistic spread of sketch bins per window.
                    writer.Write(id, Math.Exp(-3 + (random.NextDouble() + random.NextDouble() - 1) * 2), ts);
                }
            }
        }

        pipeline.StopAsync().GetAwaiter().GetResult();
        PipelineMetrics m = pipeline.GetMetrics();
        pipeline.DisposeAsync().AsTask().GetAwaiter().GetResult();
        _queries = new MetricStatisticsService(index);
        _oneSeries = LabelSet.Create(new("method", "GET"), new("route", "/api/items/0"), new("status", "500"));
        _status500 = LabelSet.Create(new Label("status", "500"));
        MetricStatistics check = _queries.GetMatching(Metric, LabelSet.Empty, TimeSpan.FromHours(1))!;
        Console.WriteLine($"// setup: {m.Offered} points offered, {m.Dropped} dropped, {m.Late} late; index {index.Aggregates} aggregates");
        Console.WriteLine($"// one-hour answer: {check.Count} values, {check.Windows} window aggregates, {check.Series} series, p99 {check.P99:G4}");
    }

    /// <summary>Every series merged into one answer.</summary>
    [Benchmark]
    public double OneHourAllSeries() => _queries.GetMatching(Metric, LabelSet.Empty, TimeSpan.FromHours(1))!.P99;

    /// <summary>The series with status="500" (one in seven) merged.</summary>
    [Benchmark]
    public double OneHourFilter() => _queries.GetMatching(Metric, _status500, TimeSpan.FromHours(1))!.P99;

    /// <summary>Grouped by status.</summary>
    [Benchmark]
    public int OneHourGroupedByStatus() => _queries.GetGrouped(Metric, LabelSet.Empty, ["status"], TimeSpan.FromHours(1)).Count;

    /// <summary>One exact series.</summary>
    [Benchmark]
    public long OneHourOneSeries() => _queries.GetStatistics(Metric, _oneSeries, TimeSpan.FromHours(1))!.Count;
}
