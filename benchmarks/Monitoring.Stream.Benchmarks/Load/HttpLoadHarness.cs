using System.Diagnostics;
using System.Globalization;
using System.Net;
using System.Net.Http.Headers;
using System.Net.Sockets;
using System.Text.RegularExpressions;
using Monitoring.Stream.Ingest;
using Monitoring.Stream.Kafka.WireFormat;
using Monitoring.Stream.Model;
using Monitoring.Stream.Pipeline;

namespace Monitoring.Stream.Benchmarks.Load;

/// <summary>
/// HTTP ingest load on loopback: starts the built <c>monitoring-stream run</c> on a free 127.0.0.1 port, sends
/// MessagePack batches of 1,000 points from N concurrent connections for a bounded time, and reports points/s,
/// request latency p50/p99, the server's CPU per point and working set, and the refused requests; then the
/// same engine in-process in the same run (writes by bound handles, and the same bodies decoded and written).
/// </summary>
/// <remarks>
/// Usage: <c>load-http [--mode normal|overload|stall] [--connections N] [--seconds S] [--rounds R] [--series N]</c>.
/// <c>overload</c>: 64 unpaced connections (as many requests as this process can send) against the service on its
/// defaults. <c>stall</c>: the same against a service whose Kafka sink's brokers never answer (a
/// listener in this process that accepts and stays silent), with 1 s windows, no lateness and a sink queue of one
/// window, so the engine stalls within seconds: memory must stay bounded and the refusals counted.
/// </remarks>
public static partial class HttpLoadHarness
{
    private const string Metric = "http_server_request_duration_seconds";
    private const int PointsPerBody = 1000;
    private const int SeriesPerBody = 50;

    public static int Run(string[] args)
    {
        string mode = "normal";
        int connections = 4;
        int seconds = 10;
        int rounds = 3;
        int series = 1000;
        for (int i = 0; i + 1 < args.Length; i += 2)
        {
            switch (args[i])
            {
                case "--mode" when args[i + 1] is "normal" or "overload" or "stall":
                    mode = args[i + 1];
                    break;
                case "--connections":
                    connections = int.Parse(args[i + 1], CultureInfo.InvariantCulture);
                    break;
                case "--seconds":
                    seconds = Math.Clamp(int.Parse(args[i + 1], CultureInfo.InvariantCulture), 1, 30);
                    break;
                case "--rounds":
                    rounds = int.Parse(args[i + 1], CultureInfo.InvariantCulture);
                    break;
                case "--series":
                    series = int.Parse(args[i + 1], CultureInfo.InvariantCulture);
                    break;
                default:
                    Console.Error.WriteLine($"unknown option {args[i]}");
                    return 2;
            }
        }

        if (mode != "normal" && !args.Contains("--connections"))
        {
            connections = 64;
        }

        string dll = ServerDll();
        Console.WriteLine($"# HTTP ingest load ({mode}): {connections} connections, {seconds} s timed after 2 s of warm-up, MessagePack bodies of {PointsPerBody:N0} points " +
            $"({SeriesPerBody} series each) over {series:N0} series, {rounds} rounds; {Environment.ProcessorCount} cores, .NET {Environment.Version}");
        Console.WriteLine($"# server: {dll}");
        Console.WriteLine($"# load before: {LoadAverage()}");
        Console.WriteLine("| round | points/s accepted | requests/s | p50 ms | p99 ms | max ms | server CPU ns/point | server CPU cores | client CPU cores | working set MiB start / max / end | 200 | 429 | 503 | other | in-process bound pts/s | in-process decode+write pts/s |");
        Console.WriteLine("|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|---:|---:|---:|---:|---:|---:|");
        Label[][] labels = BuildLabels(series);
        var results = new List<RoundResult>();
        for (int r = 0; r < rounds; r++)
        {
            RoundResult http = RunHttp(dll, labels, connections, seconds, stall: mode == "stall").GetAwaiter().GetResult();
            (double bound, double decoded) = mode == "normal" ? RunInProcess(labels) : (double.NaN, double.NaN);
            RoundResult result = http with { InProcessBound = bound, InProcessDecoded = decoded };
            results.Add(result);
            Console.WriteLine($"| {r + 1} | {result.PointsPerSecond:N0} | {result.RequestsPerSecond:N0} | {result.P50Ms:F2} | {result.P99Ms:F2} | {result.MaxMs:F1} | {result.ServerCpuNsPerPoint:F0} | " +
                $"{result.ServerCores:F2} | {result.ClientCores:F2} | {result.WorkingSetStartMiB:F0} / {result.WorkingSetMaxMiB:F0} / {result.WorkingSetEndMiB:F0} | {result.Ok:N0} | {result.TooMany:N0} | {result.Unavailable:N0} | {result.Other:N0} | " +
                $"{Format(result.InProcessBound)} | {Format(result.InProcessDecoded)} |");
        }

        Console.WriteLine();
        Console.WriteLine($"median (range): points/s {Summary(results, x => x.PointsPerSecond, "N0")}; p50 ms {Summary(results, x => x.P50Ms, "F2")}; p99 ms {Summary(results, x => x.P99Ms, "F2")}; " +
            $"server CPU ns/point {Summary(results, x => x.ServerCpuNsPerPoint, "F0")}; max working set MiB {Summary(results, x => x.WorkingSetMaxMiB, "F0")}; " +
            $"refused 429 {Summary(results, x => x.TooMany, "N0")}, 503 {Summary(results, x => x.Unavailable, "N0")}" +
            (mode != "normal" ? string.Empty : $"; in-process bound {Summary(results, x => x.InProcessBound, "N0")}, decode+write {Summary(results, x => x.InProcessDecoded, "N0")}"));
        Console.WriteLine($"# load after: {LoadAverage()}");
        return 0;
    }

    private sealed record RoundResult(
        double PointsPerSecond, double RequestsPerSecond, double P50Ms, double P99Ms, double MaxMs, double ServerCpuNsPerPoint, double ServerCores, double ClientCores,
        double WorkingSetStartMiB, double WorkingSetMaxMiB, double WorkingSetEndMiB, long Ok, long TooMany, long Unavailable, long Other,
        double InProcessBound = double.NaN, double InProcessDecoded = double.NaN);

    private static async Task<RoundResult> RunHttp(string dll, Label[][] labels, int connections, int seconds, bool stall)
    {
        using var blackHole = stall ? new TcpListener(IPAddress.Loopback, 0) : null;
        var silent = new List<Socket>();
        using var stopAccepting = new CancellationTokenSource();
        if (blackHole is not null)
        {
            blackHole.Start();
            _ = Task.Run(async () =>
            {
                try
                {
                    while (true)
                    {
                        Socket s = await blackHole.AcceptSocketAsync(stopAccepting.Token).ConfigureAwait(false);
                        lock (silent)
                        {
                            silent.Add(s);
                        }
                    }
                }
                catch (Exception e) when (e is OperationCanceledException or SocketException or ObjectDisposedException)
                {
                    // Stopped.
                }
            });
        }

        string data = Path.Combine(Path.GetTempPath(), "ms-load-http-" + Guid.NewGuid().ToString("N"));
        Directory.CreateDirectory(data);
        var start = new ProcessStartInfo("dotnet") { RedirectStandardOutput = true, RedirectStandardError = true, UseShellExecute = false, WorkingDirectory = data };
        foreach (string a in (string[])["exec", dll, "run", "--urls", "http://127.0.0.1:0", "--data-dir", data])
        {
            start.ArgumentList.Add(a);
        }

        if (blackHole is not null)
        {
            start.ArgumentList.Add("--kafka-bootstrap");
            start.ArgumentList.Add($"127.0.0.1:{((IPEndPoint)blackHole.LocalEndpoint).Port}");
            start.Environment["MONITORING_STREAM__Server__Kafka__PointsTopic"] = string.Empty;
            start.Environment["MONITORING_STREAM__Sinks__AttemptTimeout"] = "00:10:00";
            // Windows of 1 s closed at once and a sink queue of one window: the stalled sink holds the shards within seconds.
            start.Environment["MONITORING_STREAM__Sinks__QueueCapacity"] = "1";
            start.Environment["MONITORING_STREAM__Pipeline__WindowSize"] = "00:00:01";
            start.Environment["MONITORING_STREAM__Pipeline__AllowedLateness"] = "00:00:00";
        }

        using var server = new Process { StartInfo = start };
        var address = new TaskCompletionSource<Uri>(TaskCreationOptions.RunContinuationsAsynchronously);
        server.OutputDataReceived += (_, e) =>
        {
            if (e.Data is not null && ListeningLine().Match(e.Data) is { Success: true } m)
            {
                address.TrySetResult(new Uri(m.Groups[1].Value));
            }
        };
        server.ErrorDataReceived += (_, _) => { };
        server.Start();
        server.BeginOutputReadLine();
        server.BeginErrorReadLine();
        try
        {
            Uri baseAddress = await address.Task.WaitAsync(TimeSpan.FromSeconds(60)).ConfigureAwait(false);
            using var handler = new SocketsHttpHandler { MaxConnectionsPerServer = connections, PooledConnectionLifetime = Timeout.InfiniteTimeSpan };
            using var client = new HttpClient(handler) { BaseAddress = baseAddress, Timeout = TimeSpan.FromSeconds(60) };
            var bodies = new BodySet(labels);
            using var restamp = new Timer(_ => bodies.Restamp(), null, TimeSpan.FromSeconds(1), TimeSpan.FromSeconds(1));

            // Warm-up: JIT, connections, series registered, pools grown.
            await Send(client, bodies, connections, TimeSpan.FromSeconds(2), record: null).ConfigureAwait(false);

            server.Refresh();
            double wsStart = server.WorkingSet64 / 1048576.0;
            double wsMax = wsStart;
            using var sampling = new CancellationTokenSource();
            Task sampler = Task.Run(async () =>
            {
                while (!sampling.IsCancellationRequested)
                {
                    server.Refresh();
                    wsMax = Math.Max(wsMax, server.WorkingSet64 / 1048576.0);
                    try
                    {
                        await Task.Delay(100, sampling.Token).ConfigureAwait(false);
                    }
                    catch (OperationCanceledException)
                    {
                        break;
                    }
                }
            });

            var stats = new SendStats(connections);
            TimeSpan serverCpu = server.TotalProcessorTime;
            TimeSpan clientCpu = Environment.CpuUsage.TotalTime;
            var clock = Stopwatch.StartNew();
            await Send(client, bodies, connections, TimeSpan.FromSeconds(seconds), stats).ConfigureAwait(false);
            double elapsed = clock.Elapsed.TotalSeconds;
            server.Refresh();
            serverCpu = server.TotalProcessorTime - serverCpu;
            clientCpu = Environment.CpuUsage.TotalTime - clientCpu;
            await sampling.CancelAsync().ConfigureAwait(false);
            await sampler.ConfigureAwait(false);
            server.Refresh();
            double wsEnd = server.WorkingSet64 / 1048576.0;

            double[] latencies = [.. stats.Latencies.SelectMany(l => l).Order()];
            long accepted = stats.Ok * PointsPerBody;
            long requests = stats.Ok + stats.TooMany + stats.Unavailable + stats.Other;
            return new RoundResult(
                accepted / elapsed, requests / elapsed, Percentile(latencies, 0.50), Percentile(latencies, 0.99), latencies.Length == 0 ? double.NaN : latencies[^1],
                accepted == 0 ? double.NaN : serverCpu.TotalNanoseconds / accepted, serverCpu.TotalSeconds / elapsed, clientCpu.TotalSeconds / elapsed,
                wsStart, wsMax, wsEnd, stats.Ok, stats.TooMany, stats.Unavailable, stats.Other);
        }
        finally
        {
            await Stop(server, graceful: blackHole is null).ConfigureAwait(false);
            await stopAccepting.CancelAsync().ConfigureAwait(false);
            lock (silent)
            {
                silent.ForEach(s => s.Dispose());
            }

            try
            {
                Directory.Delete(data, recursive: true);
            }
            catch (IOException)
            {
                // Left for the OS's temp cleaner.
            }
        }
    }

    private static async Task Stop(Process server, bool graceful)
    {
        if (server.HasExited)
        {
            return;
        }

        if (graceful)
        {
            using Process kill = Process.Start("kill", ["-TERM", server.Id.ToString(CultureInfo.InvariantCulture)])!;
            await kill.WaitForExitAsync().ConfigureAwait(false);
            using var wait = new CancellationTokenSource(TimeSpan.FromSeconds(30));
            try
            {
                await server.WaitForExitAsync(wait.Token).ConfigureAwait(false);
                return;
            }
            catch (OperationCanceledException)
            {
                // Fall through to kill.
            }
        }

        server.Kill(entireProcessTree: true);
        await server.WaitForExitAsync().ConfigureAwait(false);
    }

    private sealed class SendStats(int connections)
    {
        public readonly List<double>[] Latencies = [.. Enumerable.Range(0, connections).Select(_ => new List<double>(1 << 16))];
        public long Ok;
        public long TooMany;
        public long Unavailable;
        public long Other;
    }

    private static Task Send(HttpClient client, BodySet bodies, int connections, TimeSpan duration, SendStats? record)
    {
        long end = Stopwatch.GetTimestamp() + (long)(duration.TotalSeconds * Stopwatch.Frequency);
        return Task.WhenAll(Enumerable.Range(0, connections).Select(c => Task.Run(async () =>
        {
            int next = c;
            var mediaType = new MediaTypeHeaderValue("application/x-msgpack");
            while (Stopwatch.GetTimestamp() < end)
            {
                byte[] body = bodies.Get(next++);
                using var content = new ByteArrayContent(body);
                content.Headers.ContentType = mediaType;
                long t0 = Stopwatch.GetTimestamp();
                HttpStatusCode status;
                try
                {
                    using HttpResponseMessage response = await client.PostAsync(new Uri("/api/v1/points", UriKind.Relative), content).ConfigureAwait(false);
                    status = response.StatusCode;
                    // Drain the (small) answer so the connection is reused.
                    _ = await response.Content.ReadAsByteArrayAsync().ConfigureAwait(false);
                }
                catch (HttpRequestException)
                {
                    status = 0;
                }

                if (record is null)
                {
                    continue;
                }

                record.Latencies[c].Add(Stopwatch.GetElapsedTime(t0).TotalMilliseconds);
                switch (status)
                {
                    case HttpStatusCode.OK:
                        Interlocked.Increment(ref record.Ok);
                        break;
                    case HttpStatusCode.TooManyRequests:
                        Interlocked.Increment(ref record.TooMany);
                        break;
                    case HttpStatusCode.ServiceUnavailable:
                        Interlocked.Increment(ref record.Unavailable);
                        break;
                    default:
                        Interlocked.Increment(ref record.Other);
                        break;
                }
            }
        })));
    }

    /// <summary>Bodies of 1,000 points, 20 per series over 50 consecutive series each, re-encoded every second with the current time.</summary>
    private sealed class BodySet
    {
        private readonly Label[][] _labels;
        private readonly double[] _values;
        private byte[][] _bodies;

        public BodySet(Label[][] labels)
        {
            _labels = labels;
            var random = new Random(5);
            _values = [.. Enumerable.Range(0, PointsPerBody).Select(_ => 0.02 * Math.Exp(0.5 * Math.Sqrt(-2.0 * Math.Log(1.0 - random.NextDouble())) * Math.Cos(2.0 * Math.PI * random.NextDouble())))];
            _bodies = Encode();
        }

        public int Count => _bodies.Length;

        public byte[] Get(int i)
        {
            byte[][] bodies = Volatile.Read(ref _bodies);
            return bodies[i % bodies.Length];
        }

        public void Restamp() => Volatile.Write(ref _bodies, Encode());

        public IReadOnlyList<byte[]> All => Volatile.Read(ref _bodies);

        private byte[][] Encode()
        {
            long now = DateTimeOffset.UtcNow.ToUnixTimeMilliseconds();
            int count = Math.Max(1, (_labels.Length + SeriesPerBody - 1) / SeriesPerBody);
            var bodies = new byte[count][];
            var encoder = new PointBatchEncoder();
            for (int b = 0; b < count; b++)
            {
                encoder.Clear();
                int[] ids = [.. Enumerable.Range(0, SeriesPerBody).Select(s => encoder.AddSeries(Metric, _labels[((b * SeriesPerBody) + s) % _labels.Length]))];
                for (int p = 0; p < PointsPerBody; p++)
                {
                    encoder.Add(ids[p % SeriesPerBody], _values[p], now);
                }

                bodies[b] = encoder.ToArray();
            }

            return bodies;
        }
    }

    /// <summary>The same engine in this process: 4 M points by bound handles from one producer, and the HTTP bodies decoded and written (the service's path without HTTP).</summary>
    private static (double Bound, double Decoded) RunInProcess(Label[][] labels)
    {
        const long Points = 4_000_000;
        double bound;
        var options = new MetricsPipelineOptions { ShardCount = Environment.ProcessorCount };
        {
            var pipeline = new MetricsPipeline(options, []);
            SeriesId[] ids = [.. labels.Select(l => pipeline.Registry.GetOrAdd(Metric, l))];
            pipeline.Start();
            using PointWriter writer = pipeline.CreateWriter("in-process", BackpressureMode.Wait);
            var random = new Random(9);
            int[] order = [.. Enumerable.Range(0, 1 << 16).Select(_ => random.Next(ids.Length))];
            long ts = DateTimeOffset.UtcNow.ToUnixTimeMilliseconds();
            for (int n = 0; n < Points / 4; n++)
            {
                writer.Write(ids[order[n & 0xFFFF]], 0.02, ts);
            }

            writer.Flush();
            var clock = Stopwatch.StartNew();
            for (long n = 0; n < Points; n++)
            {
                writer.Write(ids[order[n & 0xFFFF]], 0.02 + (n & 7), ts);
            }

            writer.Flush();
            pipeline.DrainAsync().GetAwaiter().GetResult();
            bound = Points / clock.Elapsed.TotalSeconds;
            pipeline.StopAsync().GetAwaiter().GetResult();
            pipeline.DisposeAsync().AsTask().GetAwaiter().GetResult();
        }

        double decoded;
        {
            var pipeline = new MetricsPipeline(options, []);
            pipeline.Start();
            using PointWriter writer = pipeline.CreateWriter("in-process-decode", BackpressureMode.Wait);
            var decoder = new PointBatchDecoder(pipeline.Registry);
            IReadOnlyList<byte[]> bodies = new BodySet(labels).All;
            for (int i = 0; i < bodies.Count * 4; i++)
            {
                decoder.Decode(bodies[i % bodies.Count], writer);
            }

            writer.Flush();
            long messages = Points / PointsPerBody;
            var clock = Stopwatch.StartNew();
            for (int i = 0; i < messages; i++)
            {
                decoder.Decode(bodies[i % bodies.Count], writer);
                writer.Flush();
            }

            pipeline.DrainAsync().GetAwaiter().GetResult();
            decoded = Points / clock.Elapsed.TotalSeconds;
            pipeline.StopAsync().GetAwaiter().GetResult();
            pipeline.DisposeAsync().AsTask().GetAwaiter().GetResult();
        }

        return (bound, decoded);
    }

    private static Label[][] BuildLabels(int series)
    {
        var labels = new Label[series][];
        for (int i = 0; i < series; i++)
        {
            labels[i] = [new("method", i % 2 == 0 ? "GET" : "POST"), new("route", "/api/v1/items/" + (i / 4)), new("status", (i % 4) switch { 0 => "200", 1 => "404", 2 => "500", _ => "503" })];
        }

        return labels;
    }

    private static double Percentile(double[] sorted, double q) => sorted.Length == 0 ? double.NaN : sorted[Math.Min(sorted.Length - 1, (int)(q * sorted.Length))];

    private static string Format(double value) => double.IsNaN(value) ? "-" : value.ToString("N0", CultureInfo.InvariantCulture);

    private static string Summary(List<RoundResult> results, Func<RoundResult, double> value, string format)
    {
        double[] v = [.. results.Select(value).Where(x => !double.IsNaN(x)).Order()];
        return v.Length == 0 ? "-" : $"{v[v.Length / 2].ToString(format, CultureInfo.InvariantCulture)} ({v[0].ToString(format, CultureInfo.InvariantCulture)}–{v[^1].ToString(format, CultureInfo.InvariantCulture)})";
    }

    private static string LoadAverage() => File.Exists("/proc/loadavg") ? File.ReadAllText("/proc/loadavg").Trim() : "unknown";

    private static string ServerDll()
    {
        for (DirectoryInfo? dir = new(AppContext.BaseDirectory); dir is not null; dir = dir.Parent)
        {
            if (File.Exists(Path.Combine(dir.FullName, "Monitoring.Stream.sln")))
            {
                string dll = Path.Combine(dir.FullName, "src", "Monitoring.Stream.Server", "bin", "Release", "net10.0", "monitoring-stream.dll");
                return File.Exists(dll) ? dll : throw new FileNotFoundException("Build the server first: dotnet build src/Monitoring.Stream.Server -c Release", dll);
            }
        }

        throw new DirectoryNotFoundException("Monitoring.Stream.sln not found above " + AppContext.BaseDirectory);
    }

    [GeneratedRegex(@"listening on (http://[^\s,]+)")]
    private static partial Regex ListeningLine();
}
