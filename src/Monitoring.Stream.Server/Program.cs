using System.Diagnostics;
using System.Globalization;
using Monitoring.Stream.Model;
using Monitoring.Stream.Series;
using Monitoring.Stream.Statistics;

namespace Monitoring.Stream.Server;

/// <summary>The <c>monitoring-stream</c> command line.</summary>
internal static class Program
{
    private const string Usage = """
        usage: monitoring-stream <command> [options]

        commands:
          demo [--points N] [--series N]   record synthetic request latencies and print their statistics
        """;

    public static int Main(string[] args)
    {
        if (args.Length == 0 || args[0] is "-h" or "--help" or "help")
        {
            Console.WriteLine(Usage);
            return args.Length == 0 ? 2 : 0;
        }

        try
        {
            return args[0] switch
            {
                "demo" => Demo(ParseOptions(args.AsSpan(1))),
                _ => Fail($"unknown command '{args[0]}'"),
            };
        }
        catch (ArgumentException e)
        {
            return Fail(e.Message);
        }
    }

    private static int Fail(string message)
    {
        Console.Error.WriteLine("monitoring-stream: " + message);
        Console.Error.WriteLine(Usage);
        return 2;
    }

    private static Dictionary<string, long> ParseOptions(ReadOnlySpan<string> args)
    {
        var options = new Dictionary<string, long>(StringComparer.Ordinal) { ["points"] = 5_000_000, ["series"] = 1_000 };
        for (int i = 0; i < args.Length; i++)
        {
            string name = args[i].TrimStart('-');
            if (!options.ContainsKey(name) || i + 1 >= args.Length
                || !long.TryParse(args[i + 1], NumberStyles.Integer, CultureInfo.InvariantCulture, out long value) || value <= 0)
            {
                throw new ArgumentException($"bad option '{args[i]}': expected --points N or --series N with N > 0");
            }

            options[name] = value;
            i++;
        }

        return options;
    }

    /// <summary>
    /// Interns request-latency series, streams log-normal latencies through the statistics kernel and
    /// reports throughput and per-series statistics, checked against exact values for one series.
    /// </summary>
    private static int Demo(Dictionary<string, long> options)
    {
        long points = options["points"];
        int seriesCount = (int)Math.Min(options["series"], 100_000);
        const string metric = "http_server_request_duration_seconds";
        string[] routes = ["/api/orders", "/api/items", "/api/users", "/health", "/api/search"];

        var registry = new SeriesRegistry();
        var labels = new Label[seriesCount][];
        for (int i = 0; i < seriesCount; i++)
        {
            labels[i] = [new("instance", "node-" + (i / routes.Length)), new("route", routes[i % routes.Length]), new("status", i % 7 == 0 ? "500" : "200")];
        }

        var moments = new RunningMoments[seriesCount];
        var sketches = new DdSketch[seriesCount];
        for (int i = 0; i < seriesCount; i++)
        {
            sketches[i] = new DdSketch();
        }

        var exactFirst = new List<double>();
        var random = new Random(2026);
        var clock = Stopwatch.StartNew();
        long nextReport = 1_000;
        long timestamp = DateTimeOffset.UtcNow.ToUnixTimeMilliseconds();
        Console.WriteLine($"demo: {points:N0} latency points over {seriesCount:N0} series of {metric}");
        for (long n = 0; n < points; n++)
        {
            int s = random.Next(seriesCount);
            SeriesId id = registry.GetOrAdd(metric, labels[s]);
            double latency = Latency(random, s);
            moments[id.Value].Add(latency, timestamp + n);
            sketches[id.Value].Add(latency);
            if (id.Value == 0)
            {
                exactFirst.Add(latency);
            }

            if (clock.ElapsedMilliseconds >= nextReport)
            {
                Console.WriteLine($"  {n:N0} points, {n / clock.Elapsed.TotalSeconds:N0} points/s, {registry.Count:N0} series");
                nextReport += 1_000;
            }
        }

        double seconds = clock.Elapsed.TotalSeconds;
        Console.WriteLine($"done: {points:N0} points in {seconds:F2} s = {points / seconds:N0} points/s (one thread: resolve + moments + sketch)");
        Console.WriteLine();
        Console.WriteLine($"{"series",-62} {"count",8} {"mean ms",9} {"sd ms",8} {"p50 ms",8} {"p99 ms",8} {"max ms",8}");
        var quantiles = new double[4];
        for (int i = 0; i < Math.Min(6, registry.Count); i++)
        {
            SeriesDescriptor d = registry.GetDescriptor(new SeriesId(i));
            ref RunningMoments m = ref moments[i];
            sketches[i].GetQuantiles([0.5, 0.9, 0.95, 0.99], quantiles);
            Console.WriteLine($"{d.Labels,-62} {m.Count,8:N0} {m.Mean * 1e3,9:F2} {m.SampleStdDev * 1e3,8:F2} {quantiles[0] * 1e3,8:F2} {quantiles[3] * 1e3,8:F2} {m.Max * 1e3,8:F2}");
        }

        exactFirst.Sort();
        double exactP99 = exactFirst[(int)Math.Floor(0.99 * (exactFirst.Count - 1))];
        double sketchP99 = sketches[0].GetQuantile(0.99);
        Console.WriteLine();
        Console.WriteLine($"check, series #0: sketch p99 {sketchP99 * 1e3:F3} ms vs exact {exactP99 * 1e3:F3} ms, relative error {Math.Abs(sketchP99 - exactP99) / exactP99:P3} (bound 1%)");
        Console.WriteLine($"sketch of series #0 serializes to {sketches[0].GetSerializedSize():N0} bytes");
        return 0;
    }

    /// <summary>Log-normal latency whose median depends on the series (5 ms to 80 ms).</summary>
    private static double Latency(Random random, int series)
    {
        double u1 = 1.0 - random.NextDouble();
        double u2 = random.NextDouble();
        double gaussian = Math.Sqrt(-2.0 * Math.Log(u1)) * Math.Cos(2.0 * Math.PI * u2);
        double median = 0.005 * (1 + (series % 16));
        return median * Math.Exp(0.5 * gaussian);
    }
}
