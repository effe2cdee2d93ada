using Microsoft.Extensions.Hosting;
using Monitoring.Stream.Ingest;
using Monitoring.Stream.Model;
using Monitoring.Stream.Pipeline;

namespace Monitoring.Stream.Server.Service;

/// <summary>
/// The small synthetic load of <c>run --demo-load</c>: request latencies of a made-up shop
/// (<c>demo_http_request_duration_seconds{method,route,status}</c>) and a queue depth gauge
/// (<c>demo_queue_depth{queue}</c>), stamped with the clock, so a newcomer sees statistics at once.
/// </summary>
internal sealed class DemoLoadService(MetricsPipeline pipeline, ServerSettings settings, TimeProvider time) : BackgroundService
{
    /// <summary>The latency metric.</summary>
    public const string LatencyMetric = "demo_http_request_duration_seconds";

    /// <summary>The gauge metric.</summary>
    public const string QueueMetric = "demo_queue_depth";

    private static readonly string[] s_routes = ["/api/orders", "/api/items", "/api/cart", "/api/search", "/health"];
    private static readonly string[] s_methods = ["GET", "POST"];
    private static readonly string[] s_statuses = ["200", "500"];
    private static readonly string[] s_queues = ["orders", "emails"];

    /// <inheritdoc />
    protected override async Task ExecuteAsync(CancellationToken stoppingToken)
    {
        using PointWriter writer = pipeline.CreateWriter("demo-load", BackpressureMode.DropNewest);
        var series = new List<(SeriesId Id, double Median)>();
        for (int r = 0; r < s_routes.Length; r++)
        {
            foreach (string method in s_methods)
            {
                foreach (string status in s_statuses)
                {
                    series.Add((pipeline.Registry.GetOrAdd(LatencyMetric, [new("method", method), new("route", s_routes[r]), new("status", status)]), 0.004 * (r + 1) * (status == "500" ? 3 : 1)));
                }
            }
        }

        SeriesId[] queues = [.. s_queues.Select(q => pipeline.Registry.GetOrAdd(QueueMetric, [new("queue", q)]))];
        var random = new Random(7);
        int perTick = Math.Max(1, settings.DemoLoadPointsPerSecond / 10);
        using var timer = new PeriodicTimer(TimeSpan.FromMilliseconds(100), time);
        try
        {
            while (await timer.WaitForNextTickAsync(stoppingToken).ConfigureAwait(false))
            {
                long now = time.GetUtcNow().ToUnixTimeMilliseconds();
                for (int i = 0; i < perTick; i++)
                {
                    // Mostly 200s: a 500 series gets one point in fifty.
                    int s = random.Next(series.Count);
                    if (s % 2 == 1 && random.Next(50) != 0)
                    {
                        s--;
                    }

                    double gaussian = Math.Sqrt(-2.0 * Math.Log(1.0 - random.NextDouble())) * Math.Cos(2.0 * Math.PI * random.NextDouble());
                    writer.Write(series[s].Id, series[s].Median * Math.Exp(0.5 * gaussian), now);
                }

                for (int q = 0; q < queues.Length; q++)
                {
                    writer.Write(queues[q], 50 + (40 * Math.Sin(now / 20_000.0 + q)) + random.Next(5), now);
                }

                writer.Flush();
            }
        }
        catch (OperationCanceledException)
        {
            // Stopping.
        }
    }
}
