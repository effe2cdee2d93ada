using System.Runtime.CompilerServices;
using BenchmarkDotNet.Attributes;
using Monitoring.Stream.Ingest;
using Monitoring.Stream.Hosting.Queries;
using Monitoring.Stream.Model;
using Monitoring.Stream.Pipeline;
using Monitoring.Stream.Sinks;
using Monitoring.Stream.Store;

namespace Monitoring.Stream.Hosting.Benchmarks;

/// <summary>
/// A one-hour statistics query over one metric with 1,000 series (10 s windows: 360 windows per series,
/// 360,000 window aggregates): the last 15 minutes from the in-memory index, the rest read back from the
/// Arrow store's files, as the service is configured by default.
/// </summary>
[MemoryDiagnoser]
public class StatisticsQueryBenchmarks
{
    private const string Metric = "http_server_request_duration_seconds";
    private string _directory = string.Empty;
    private MetricStatisticsService _queries = null!;
    private MetricStatisticsService _cold = null!;
    private RecentWindowIndex _index = null!;
    private ArrowFileStore _store = null!;

    [Params(1_000)]
    public int Series { get; set; }

    [GlobalSetup]
    public void Setup()
    {
        _directory = Path.Combine(Path.GetTempPath(), "ms-query-bench-" + Guid.NewGuid().ToString("N"));
        long heapBefore = GC.GetTotalMemory(forceFullCollection: true);
        _index = new RecentWindowIndex(new RecentWindowIndexOptions { Retention = TimeSpan.FromMinutes(15) });
        Ingest();
        // The pipeline is gone: what stays on the heap is the index (and the file store's small state).
        long heapAfter = GC.GetTotalMemory(forceFullCollection: true);
        _queries = new MetricStatisticsService(_index, _store);
        MetricStatistics check = _queries.GetMatching(Metric, LabelSet.Empty, TimeSpan.FromHours(1))!;
        Console.WriteLine($"// one-hour answer: {check.Count} values, {check.Windows} window aggregates, {check.Series} series");
        Console.WriteLine($"// index holds {_index.Aggregates} aggregates in {(heapAfter - heapBefore) / (double)_index.Aggregates:F0} B each, boundary {DateTimeOffset.FromUnixTimeMilliseconds(_index.MemoryBoundaryUnixMs):O}; {Directory.GetFiles(_directory).Length} files");
    }

    [MethodImpl(MethodImplOptions.NoInlining)]
    private void Ingest()
    {
        var store = new ArrowFileStore(new ArrowFileStoreOptions { Directory = _directory, MaxFileAge = TimeSpan.FromMinutes(1) });
        // The queries take the pipeline's store: its own files answer only what the index no longer holds.
        _store = store;
        long now = DateTimeOffset.UtcNow.ToUnixTimeMilliseconds();
        long start = now - 3_600_000;
        var pipeline = new MetricsPipeline(new MetricsPipelineOptions { MaxPointAge = TimeSpan.FromHours(2), Instance = "bench" }, [(IWindowSink)_index, store]);
        pipeline.Start();
        // Setup data goes through a waiting writer, so that none of it is dropped.
        using (PointWriter writer = pipeline.CreateWriter("bench", BackpressureMode.Wait))
        {
            SeriesId[] ids = [.. Enumerable.Range(0, Series).Select(i => pipeline.Registry.GetOrAdd(Metric,
                new Label("method", i % 2 == 0 ? "GET" : "POST"), new Label("route", "/api/items/" + i), new Label("status", i % 7 == 0 ? "500" : "200")))];
            var random = new Random(1);
            // Five points per series and window.
            for (long ts = start; ts < now; ts += 2_000)
            {
                foreach (SeriesId id in ids)
                {
                    writer.Write(id, random.NextDouble() * 0.5, ts);
                }
            }
        }

        pipeline.StopAsync().GetAwaiter().GetResult();
        PipelineMetrics m = pipeline.GetMetrics();
        Console.WriteLine($"// setup: {m.Offered} points offered, {m.EmittedPoints} emitted, {m.Dropped} dropped, {m.Late} late");
        pipeline.DisposeAsync().AsTask().GetAwaiter().GetResult();
    }

    [IterationSetup(Target = nameof(OneHourAllSeriesColdFileSummaries))]
    public void ForgetFileSummaries() => _cold = new MetricStatisticsService(_index, _store);

    /// <summary>Every series merged into one answer.</summary>
    [Benchmark]
    public double OneHourAllSeries() => _queries.GetMatching(Metric, LabelSet.Empty, TimeSpan.FromHours(1))!.P99;

    /// <summary>The same with a fresh service, which reads and summarises every file for the first time.</summary>
    [Benchmark]
    public double OneHourAllSeriesColdFileSummaries() => _cold.GetMatching(Metric, LabelSet.Empty, TimeSpan.FromHours(1))!.P99;

    /// <summary>Grouped by status.</summary>
    [Benchmark]
    public int OneHourGroupedByStatus() => _queries.GetGrouped(Metric, LabelSet.Empty, ["status"], TimeSpan.FromHours(1)).Count;

    /// <summary>One exact series.</summary>
    [Benchmark]
    public long OneHourOneSeries() => _queries.GetStatistics(Metric, LabelSet.Create(new("method", "GET"), new("route", "/api/items/0"), new("status", "500")), TimeSpan.FromHours(1))!.Count;

    [GlobalCleanup]
    public void Cleanup() => Directory.Delete(_directory, recursive: true);
}
