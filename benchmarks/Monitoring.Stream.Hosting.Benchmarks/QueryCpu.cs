using System.Diagnostics;
using System.Globalization;
using Monitoring.Stream.Hosting.Queries;
using Monitoring.Stream.Ingest;
using Monitoring.Stream.Model;
using Monitoring.Stream.Pipeline;
using Monitoring.Stream.Sinks;
using Monitoring.Stream.Store;

namespace Monitoring.Stream.Hosting.Benchmarks;

/// <summary>
/// Wall and process CPU time of one-hour statistics queries over one metric with 1,000 series, for a
/// given window size and time held in memory (the rest is read from the Arrow store's files). On a shared
/// machine the CPU time says what a query costs; the wall time also says how long it waited for a core.
/// </summary>
/// <remarks>Usage: <c>query-cpu [--window-seconds 60] [--memory-minutes 120] [--runs 9]</c>.</remarks>
internal static class QueryCpu
{
    private const string Metric = "http_server_request_duration_seconds";

    public static void Run(string[] args)
    {
        int windowSeconds = Option(args, "--window-seconds", 60);
        int memoryMinutes = Option(args, "--memory-minutes", 120);
        int runs = Option(args, "--runs", 9);
        const int Series = 1_000;
        string directory = Path.Combine(Path.GetTempPath(), "ms-query-cpu-" + Guid.NewGuid().ToString("N"));
        try
        {
            var index = new RecentWindowIndex(new RecentWindowIndexOptions { Retention = TimeSpan.FromMinutes(memoryMinutes), MaxAggregates = 1_000_000 });
            ArrowFileStore store = Ingest(index, directory, windowSeconds, Series);
            var queries = new MetricStatisticsService(index, store);
            MetricStatistics check = queries.GetMatching(Metric, LabelSet.Empty, TimeSpan.FromHours(1))!;
            Console.WriteLine(string.Create(CultureInfo.InvariantCulture,
                $"{windowSeconds} s windows, {memoryMinutes} min in memory: {check.Windows:N0} aggregates ({index.Aggregates:N0} in memory), {check.Count:N0} values; load {File.ReadAllText("/proc/loadavg").Trim()}"));
            LabelSet one = LabelSet.Create(new("method", "GET"), new("route", "/api/items/0"), new("status", "500"));
            LabelSet status500 = LabelSet.Create(new Label("status", "500"));
            using Process process = Process.GetCurrentProcess();
            foreach ((string name, Func<object?> query) in new (string, Func<object?>)[]
            {
                ("every series merged", () => queries.GetMatching(Metric, LabelSet.Empty, TimeSpan.FromHours(1))),
                ("filter status=500", () => queries.GetMatching(Metric, status500, TimeSpan.FromHours(1))),
                ("grouped by status", () => queries.GetGrouped(Metric, LabelSet.Empty, ["status"], TimeSpan.FromHours(1))),
                ("one exact series", () => queries.GetStatistics(Metric, one, TimeSpan.FromHours(1))),
            })
            {
                for (int i = 0; i < 5; i++)
                {
                    query();
                }

                var wall = new List<double>();
                var cpu = new List<double>();
                long alloc0 = GC.GetTotalAllocatedBytes(precise: true);
                for (int i = 0; i < runs; i++)
                {
                    process.Refresh();
                    TimeSpan cpu0 = process.TotalProcessorTime;
                    var watch = Stopwatch.StartNew();
                    query();
                    watch.Stop();
                    process.Refresh();
                    wall.Add(watch.Elapsed.TotalMilliseconds);
                    cpu.Add((process.TotalProcessorTime - cpu0).TotalMilliseconds);
                }

                double allocated = (GC.GetTotalAllocatedBytes(precise: true) - alloc0) / (double)runs;
                wall.Sort();
                cpu.Sort();
                Console.WriteLine(string.Create(CultureInfo.InvariantCulture,
                    $"  {name}: wall median {wall[runs / 2]:F1} ms ({wall[0]:F1}–{wall[^1]:F1}), process CPU median {cpu[runs / 2]:F1} ms ({cpu[0]:F1}–{cpu[^1]:F1}), {allocated / 1e6:F2} MB allocated"));
            }
        }
        finally
        {
            Directory.Delete(directory, recursive: true);
        }
    }

    /// <returns>The pipeline's store: the queries take it, so its own files answer only what the index no longer holds.</returns>
    private static ArrowFileStore Ingest(RecentWindowIndex index, string directory, int windowSeconds, int series)
    {
        var store = new ArrowFileStore(new ArrowFileStoreOptions { Directory = directory, MaxFileAge = TimeSpan.FromMinutes(1) });
        long now = DateTimeOffset.UtcNow.ToUnixTimeMilliseconds();
        long start = now - 3_600_000;
        var options = new MetricsPipelineOptions { WindowSize = TimeSpan.FromSeconds(windowSeconds), MaxPointAge = TimeSpan.FromHours(2), Instance = "bench" };
        var pipeline = new MetricsPipeline(options, [(IWindowSink)index, store]);
        pipeline.Start();
        using (PointWriter writer = pipeline.CreateWriter("bench", BackpressureMode.Wait))
        {
            SeriesId[] ids = [.. Enumerable.Range(0, series).Select(i => pipeline.Registry.GetOrAdd(Metric,
                new Label("method", i % 2 == 0 ? "GET" : "POST"), new Label("route", "/api/items/" + i.ToString(CultureInfo.InvariantCulture)), new Label("status", i % 7 == 0 ? "500" : "200")))];
            var random = new Random(1);
            // Ten log-normal latencies per series and window.
            for (long ts = start; ts < now; ts += windowSeconds * 100)
            {
                foreach (SeriesId id in ids)
                {
                    writer.Write(id, Math.Exp(-3 + ((random.NextDouble() + random.NextDouble() - 1) * 2)), ts);
                }
            }
        }

        pipeline.StopAsync().GetAwaiter().GetResult();
        pipeline.DisposeAsync().AsTask().GetAwaiter().GetResult();
        return store;
    }

    private static int Option(string[] args, string name, int fallback)
    {
        int at = Array.IndexOf(args, name);
        return at >= 0 && at + 1 < args.Length ? int.Parse(args[at + 1], CultureInfo.InvariantCulture) : fallback;
    }
}
