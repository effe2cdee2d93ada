using System.Diagnostics;
using System.Globalization;
using System.Net;
using System.Net.Sockets;
using System.Text.Json;
using Apache.Arrow;
using Apache.Arrow.Ipc;
using Monitoring.Stream.Model;
using Monitoring.Stream.Server.Tests.Support;
using Monitoring.Stream.Tests.Support;

namespace Monitoring.Stream.Server.Tests;

/// <summary>
/// Probe 14: <c>monitoring-stream run</c> killed (SIGKILL) and stopped (SIGTERM under load), then started again on the
/// same data folder, judged through what a user sees: the HTTP statistics over the points written before. From
/// README.md, docs/http-api.md, docs/operations.md, docs/arrow-schema.md and docs/sdk.md ("No window is counted twice,
/// and none is left out"; "Acknowledged means on disk"; "A partial file is recovered, not deleted").
/// </summary>
[Collection("Probe14 processes")]
public class Probe14CrashRestartTests(Xunit.Abstractions.ITestOutputHelper output)
{
    private static Dictionary<string, string> Settings(params (string Key, string Value)[] more)
    {
        var all = new Dictionary<string, string>
        {
            ["MONITORING_STREAM__SystemMetricsEnabled"] = "false",
            ["MONITORING_STREAM__Pipeline__ShardCount"] = "2",
        };
        foreach ((string key, string value) in more)
        {
            all["MONITORING_STREAM__" + key] = value;
        }

        return all;
    }

    private static HttpClient Client(ServerProcess server) => new() { BaseAddress = server.Address, Timeout = TimeSpan.FromSeconds(30) };

    private static async Task<JsonElement> StatisticsAsync(HttpClient client, string metric, string extra = "") =>
        await ServiceApi.GetJsonAsync(client, $"/api/v1/statistics?metric={metric}&window=1h{extra}");

    /// <summary>Count, sum, min and max of the one merged answer (null when there is none).</summary>
    private static (long Count, double Sum, double Min, double Max)? Figures(JsonElement answer)
    {
        JsonElement s = answer.GetProperty("statistics");
        return s.ValueKind == JsonValueKind.Null
            ? null
            : (s.GetProperty("count").GetInt64(), s.GetProperty("sum").GetDouble(), s.GetProperty("min").GetDouble(), s.GetProperty("max").GetDouble());
    }

    /// <summary>group label value → (count, sum, min, max) of a grouped answer.</summary>
    private static SortedDictionary<string, (long Count, double Sum, double Min, double Max)> Groups(JsonElement answer, string label)
    {
        var groups = new SortedDictionary<string, (long, double, double, double)>(StringComparer.Ordinal);
        foreach (JsonElement g in answer.GetProperty("groups").EnumerateArray())
        {
            JsonElement s = g.GetProperty("statistics");
            string key = g.GetProperty("labels").TryGetProperty(label, out JsonElement v) ? v.GetString()! : "(none)";
            groups[key] = (s.GetProperty("count").GetInt64(), s.GetProperty("sum").GetDouble(), s.GetProperty("min").GetDouble(), s.GetProperty("max").GetDouble());
        }

        return groups;
    }

    private static string Show<T>(IEnumerable<KeyValuePair<string, T>> groups) => string.Join("; ", groups.Select(g => $"{g.Key}={g.Value}"));

    /// <summary>Posts one part of the data: <paramref name="n"/> whole-number values (sums exact in a double), stamped now.</summary>
    private static async Task<(long Count, double Sum, double Min, double Max)> PostPartAsync(HttpClient client, string metric, string part, int n, int offset)
    {
        double[] values = [.. Enumerable.Range(0, n).Select(i => (double)(offset + (i * 7 % n)))];
        byte[] body = ServiceApi.MessagePack(metric, [new Label("part", part)], values, ServiceApi.Now);
        using HttpResponseMessage response = await ServiceApi.PostAsync(client, body, "application/x-msgpack");
        string text = await response.Content.ReadAsStringAsync();
        Assert.True(response.StatusCode == HttpStatusCode.OK, $"POST part {part}: {(int)response.StatusCode} {text}");
        using JsonDocument answer = JsonDocument.Parse(text);
        Assert.True(answer.RootElement.GetProperty("accepted").GetInt64() == n, $"POST part {part}: {text}");
        return (n, values.Sum(), values.Min(), values.Max());
    }

    /// <summary>
    /// Waits until the statistics count <paramref name="expectedCount"/> points of <paramref name="metric"/> (their windows
    /// closed), then until the Arrow store has acknowledged every window emitted by then (docs/operations.md: written means
    /// on disk, fsync'ed).
    /// </summary>
    private static async Task WaitClosedAndAcknowledgedAsync(HttpClient client, string metric, long expectedCount)
    {
        double emittedThen = 0;
        await Poll.UntilAsync<string>(
            async () =>
            {
                (long Count, double, double, double)? f = Figures(await StatisticsAsync(client, metric));
                if (f is null || f.Value.Count != expectedCount)
                {
                    return null;
                }

                emittedThen = MetricsText.Value(await client.GetStringAsync(new Uri("/metrics", UriKind.Relative)), "monitoring_stream_windows_emitted_total");
                return "closed";
            },
            TimeSpan.FromSeconds(60),
            $"{expectedCount} points of {metric} in the statistics");
        await Poll.UntilAsync<string>(
            async () =>
            {
                string text = await client.GetStringAsync(new Uri("/metrics", UriKind.Relative));
                return MetricsText.Value(text, "monitoring_stream_sink_batches_written_total{sink=\"arrow-files\"}") >= emittedThen ? text : null;
            },
            TimeSpan.FromSeconds(60),
            "the store acknowledging the windows");
    }

    private static async Task KillAsync(ServerProcess server)
    {
        server.Process.Kill(); // SIGKILL: no stop at all
        Assert.Equal(137, await server.WaitForExitAsync(TimeSpan.FromSeconds(30)));
        Assert.DoesNotContain("stopped (", server.Output, StringComparison.Ordinal);
    }

    [Fact]
    public async Task Probe14_SigKillTwiceThenRestart_StatisticsOverAcknowledgedWindowsExactlyAsBeforeEachKill()
    {
        // docs/operations.md and arrow-schema.md: a batch acknowledged by the store is on disk; after a crash the partial
        // file holds every acknowledged batch and is recovered when the store opens. sdk.md: "No window is counted twice,
        // and none is left out" (memory and files; a file of an earlier run is answered whole). So after each SIGKILL the
        // statistics of the points whose windows the store had acknowledged are what the killed run answered.
        using var data = new TempDirectory();
        Dictionary<string, string> settings = Settings(("Pipeline__WindowSize", "00:00:01"), ("Pipeline__AllowedLateness", "00:00:05"), ("Pipeline__SourceIdleTimeout", "00:00:01"));
        string metric = ServiceApi.UniqueMetric("probe14_kill");
        string windows = Path.Combine(data.Path, "windows");
        var expected = new SortedDictionary<string, (long Count, double Sum, double Min, double Max)>(StringComparer.Ordinal);
        JsonElement beforeFirstKill;

        // Run 1: three parts, closed and acknowledged, then SIGKILL.
        await using (ServerProcess first = await ServerProcess.StartAsync(environment: settings, dataDirectory: data.Path))
        {
            using HttpClient client = Client(first);
            expected["a"] = await PostPartAsync(client, metric, "a", 400, 1);
            await Task.Delay(1100); // another window
            expected["b"] = await PostPartAsync(client, metric, "b", 300, 1000);
            expected["c"] = await PostPartAsync(client, metric, "c", 200, -500);
            await WaitClosedAndAcknowledgedAsync(client, metric, 900);
            beforeFirstKill = await StatisticsAsync(client, metric);
            Assert.Equal(Show(expected), Show(Groups(await StatisticsAsync(client, metric, "&groupBy=part"), "part")));
            await KillAsync(first);
        }

        Assert.True(Directory.GetFiles(windows, "*.partial").Length > 0, "the killed run left no partial file (nothing to recover)");

        // Run 2: everything of run 1 is answered, exactly as run 1 answered it; then a fourth part, acknowledged, SIGKILL again.
        await using (ServerProcess second = await ServerProcess.StartAsync(environment: settings, dataDirectory: data.Path))
        {
            using HttpClient client = Client(second);
            JsonElement after = await StatisticsAsync(client, metric);
            AssertSameStatistics(beforeFirstKill, after, "run 2 against run 1 before its SIGKILL");
            Assert.Equal(Show(expected), Show(Groups(await StatisticsAsync(client, metric, "&groupBy=part"), "part")));
            string text = await client.GetStringAsync(new Uri("/metrics", UriKind.Relative));
            Assert.True(MetricsText.Value(text, "monitoring_stream_store_partial_files_recovered_total") >= 1, "run 2 recovered no partial file");
            Assert.Equal(0, MetricsText.Value(text, "monitoring_stream_store_pending_recoveries"));

            expected["d"] = await PostPartAsync(client, metric, "d", 500, 10_000);
            await WaitClosedAndAcknowledgedAsync(client, metric, 1400);
            Assert.Equal(Show(expected), Show(Groups(await StatisticsAsync(client, metric, "&groupBy=part"), "part")));
            await KillAsync(second);
        }

        // Run 3: both earlier runs' points, each once; a graceful stop at the end leaves no partial file.
        await using (ServerProcess third = await ServerProcess.StartAsync(environment: settings, dataDirectory: data.Path))
        {
            using HttpClient client = Client(third);
            Assert.Equal(Show(expected), Show(Groups(await StatisticsAsync(client, metric, "&groupBy=part"), "part")));
            (long Count, double Sum, double Min, double Max)? all = Figures(await StatisticsAsync(client, metric));
            Assert.Equal((1400L, expected.Values.Sum(v => v.Sum), -500.0, 10_499.0), all);

            third.Terminate();
            int exit = await third.WaitForExitAsync(TimeSpan.FromSeconds(60));
            Assert.True(exit == 0, $"exit code {exit} after SIGTERM. Output:\n{third.Output}");
        }

        Assert.Empty(Directory.GetFiles(windows, "*.partial"));
        Assert.Empty(Directory.GetFiles(windows, "*.recovering"));
    }

    /// <summary>
    /// Two statistics answers over the same closed windows, one from memory, one from the recovered files: count, min,
    /// max, series and windows exactly; sums exactly too (whole numbers); quantiles from the same sketches merged.
    /// </summary>
    private static void AssertSameStatistics(JsonElement before, JsonElement after, string what)
    {
        JsonElement a = before.GetProperty("statistics");
        JsonElement b = after.GetProperty("statistics");
        Assert.True(b.ValueKind != JsonValueKind.Null, $"{what}: no statistics at all after the restart (before: {a})");
        foreach (string field in new[] { "count", "sum", "min", "max", "series", "windows", "firstWindowStart", "lastWindowEnd" })
        {
            Assert.True(a.GetProperty(field).ToString() == b.GetProperty(field).ToString(), $"{what}: {field} {b.GetProperty(field)}, before {a.GetProperty(field)}\nbefore: {a}\nafter:  {b}");
        }

        foreach (string field in new[] { "mean", "p50", "p90", "p99" })
        {
            double x = a.GetProperty(field).GetDouble();
            double y = b.GetProperty(field).GetDouble();
            Assert.True(Math.Abs(x - y) <= 1e-9 * Math.Max(1, Math.Abs(x)), $"{what}: {field} {y}, before {x}");
        }
    }

    [Fact]
    public async Task Probe14_SigTermUnderHeavyIngestThenRestart_StatisticsPerSenderCountEveryAcceptedPointOnce()
    {
        // README: Ctrl+C (or SIGTERM) "stops it cleanly (open windows go to the store)"; docs/http-api.md: points sent =
        // accepted + rejected + refused; sdk.md: the next run answers an earlier run's files whole, none counted twice.
        // One-minute windows: every point is in an open window when SIGTERM comes; only the stop writes it.
        using var data = new TempDirectory();
        Dictionary<string, string> settings = Settings(("Pipeline__WindowSize", "00:01:00"), ("Pipeline__ShutdownTimeout", "00:00:20"));
        string metric = ServiceApi.UniqueMetric("probe14_term");
        const int Senders = 6;
        const int PerRequest = 2000;
        long[] accepted = new long[Senders];
        long[] unanswered = new long[Senders];
        long requests = 0;
        long rejected = 0;
        var statuses = new System.Collections.Concurrent.ConcurrentBag<string>();
        TimeSpan stopTook;
        await using (ServerProcess first = await ServerProcess.StartAsync(environment: settings, dataDirectory: data.Path))
        {
            using HttpClient client = Client(first);
            async Task Sender(int id)
            {
                while (true)
                {
                    byte[] body = ServiceApi.MessagePack(metric, [new Label("sender", id.ToString(CultureInfo.InvariantCulture))], Enumerable.Repeat(2.0, PerRequest), ServiceApi.Now);
                    HttpResponseMessage response;
                    try
                    {
                        response = await ServiceApi.PostAsync(client, body, "application/x-msgpack");
                    }
                    catch (Exception e) when (e is HttpRequestException or TaskCanceledException)
                    {
                        if (e is HttpRequestException { InnerException: SocketException { SocketErrorCode: SocketError.ConnectionRefused } })
                        {
                            return;
                        }

                        Interlocked.Add(ref unanswered[id], PerRequest); // reset mid-answer: written or not, unknown
                        if (first.Process.HasExited)
                        {
                            return;
                        }

                        continue;
                    }

                    using (response)
                    {
                        Interlocked.Increment(ref requests);
                        string text = await response.Content.ReadAsStringAsync();
                        statuses.Add(((int)response.StatusCode).ToString(CultureInfo.InvariantCulture));
                        if (response.StatusCode == HttpStatusCode.OK)
                        {
                            using JsonDocument answer = JsonDocument.Parse(text);
                            Interlocked.Add(ref accepted[id], answer.RootElement.GetProperty("accepted").GetInt64());
                            Interlocked.Add(ref rejected, answer.RootElement.GetProperty("rejected").GetInt64());
                        }
                        else
                        {
                            Assert.True(response.StatusCode is HttpStatusCode.ServiceUnavailable or HttpStatusCode.TooManyRequests, $"{(int)response.StatusCode} {text}");
                        }
                    }

                    if (first.Process.HasExited)
                    {
                        return;
                    }
                }
            }

            Task[] senders = [.. Enumerable.Range(0, Senders).Select(i => Task.Run(() => Sender(i)))];
            var clock = Stopwatch.StartNew();
            while (Interlocked.Read(ref requests) < 60)
            {
                Assert.True(clock.Elapsed < TimeSpan.FromSeconds(90), $"the senders got {Interlocked.Read(ref requests)} answers in 90 s");
                await Task.Delay(50);
            }

            var stop = Stopwatch.StartNew();
            first.Terminate();
            int exit = await first.WaitForExitAsync(TimeSpan.FromSeconds(90));
            stopTook = stop.Elapsed;
            Task all = Task.WhenAll(senders);
            Assert.True(await Task.WhenAny(all, Task.Delay(TimeSpan.FromSeconds(30))) == all, "the senders did not notice the stop within 30 s");
            await all;
            Assert.True(exit == 0, $"exit code {exit} after SIGTERM ({stopTook}). Output:\n{first.Output}");
            Assert.Contains("stopped (Stopped)", first.Output, StringComparison.Ordinal);
        }

        // The graceful stop is bounded by the 20 s shutdown timeout; the rest of the process's end is the host's. Generous.
        Assert.True(stopTook < TimeSpan.FromSeconds(60), $"SIGTERM to exit took {stopTook} with a 20 s shutdown timeout");
        Assert.Equal(0, rejected);
        Assert.Empty(Directory.GetFiles(Path.Combine(data.Path, "windows"), "*.partial"));

        await using (ServerProcess second = await ServerProcess.StartAsync(environment: settings, dataDirectory: data.Path))
        {
            using HttpClient client = Client(second);
            SortedDictionary<string, (long Count, double Sum, double Min, double Max)> groups = Groups(await StatisticsAsync(client, metric, "&groupBy=sender"), "sender");
            (long stored, double storedSum) = await StoreFiles.ReadAsync(Path.Combine(data.Path, "windows"), metric);
            string counts = $"answers accepted [{string.Join(", ", accepted)}], unanswered [{string.Join(", ", unanswered)}]; statistics {Show(groups)}; store {stored}; statuses {string.Join(",", statuses.GroupBy(s => s).Select(g => $"{g.Key}x{g.Count()}"))}";
            for (int id = 0; id < Senders; id++)
            {
                string key = id.ToString(CultureInfo.InvariantCulture);
                long count = groups.TryGetValue(key, out var g) ? g.Count : 0;
                Assert.True(count >= accepted[id], $"sender {id}: the statistics after the restart count {count}, its 200 answers accepted {accepted[id]}: {counts}");
                Assert.True(count <= accepted[id] + unanswered[id], $"sender {id}: the statistics count {count}, more than accepted {accepted[id]} + unanswered {unanswered[id]}: {counts}");
                if (count > 0)
                {
                    Assert.True(g.Sum == 2.0 * count && g.Min == 2.0 && g.Max == 2.0, $"sender {id}: {g}: {counts}");
                }
            }

            // No double counting between the statistics and the files that hold them.
            long total = groups.Values.Sum(v => v.Count);
            Assert.True(total == stored, $"statistics {total} points, the store's files {stored}: {counts}");
            Assert.Equal(2.0 * stored, storedSum);

            // With step = the window size every window falls in exactly one bucket: the buckets add up to the total.
            JsonElement stepped = await StatisticsAsync(client, metric, "&step=1m");
            long inBuckets = stepped.GetProperty("series").EnumerateArray()
                .Select(b => b.GetProperty("statistics"))
                .Where(s => s.ValueKind != JsonValueKind.Null)
                .Sum(s => s.GetProperty("count").GetInt64());
            Assert.True(inBuckets == total, $"buckets of step=1m add up to {inBuckets}, the whole answer {total}");

            second.Terminate();
            Assert.Equal(0, await second.WaitForExitAsync(TimeSpan.FromSeconds(60)));
        }
    }

    [Fact]
    public async Task Probe14_SigKillMidIngestThreeTimes_NoFileSetAsideNothingCountedTwiceEveryAcknowledgedWindowKept()
    {
        // The store writes all the time (1 s windows, 4 senders): each SIGKILL can land inside a batch's write, leaving a
        // torn tail. arrow-schema.md: the partial file is recovered with its torn tail cut, never set aside; "an interrupted
        // recovery is simply done again". sdk.md: none counted twice. So after each kill, the statistics of the metric
        // equal what the store's files hold, never more than the senders were told was accepted (plus unanswered), and
        // what an earlier run had acknowledged (checked right before the kill) is still there.
        using var data = new TempDirectory();
        Dictionary<string, string> settings = Settings(("Pipeline__WindowSize", "00:00:01"), ("Pipeline__AllowedLateness", "00:00:02"), ("Pipeline__SourceIdleTimeout", "00:00:01"));
        string metric = ServiceApi.UniqueMetric("probe14_midkill");
        string windows = Path.Combine(data.Path, "windows");
        long accepted = 0;
        long unanswered = 0;
        long lowerBound = 0; // points the statistics counted in a run, with the store acknowledged past them, before its kill
        var random = new Random(14);
        for (int run = 0; run < 3; run++)
        {
            await using ServerProcess server = await ServerProcess.StartAsync(environment: settings, dataDirectory: data.Path);
            using HttpClient client = Client(server);
            string metricsText = await client.GetStringAsync(new Uri("/metrics", UriKind.Relative));
            Assert.True(MetricsText.Value(metricsText, "monitoring_stream_store_files_set_aside") == 0, $"run {run}: a file was set aside after a kill. Output:\n{server.Output}");
            Assert.True(MetricsText.Value(metricsText, "monitoring_stream_store_pending_recoveries") == 0, $"run {run}: a partial file waits. Output:\n{server.Output}");
            (long stored, _) = await StoreFiles.ReadAsync(windows, metric);
            long counted = Figures(await StatisticsAsync(client, metric))?.Count ?? 0;
            Assert.True(counted == stored, $"run {run}: the statistics count {counted} points, the store's files hold {stored}");
            Assert.True(counted >= lowerBound, $"run {run}: the statistics count {counted} points, the killed run had {lowerBound} counted and acknowledged");
            Assert.True(counted <= accepted + unanswered, $"run {run}: the statistics count {counted} points, more than accepted {accepted} + unanswered {unanswered}");

            using var stopSending = new CancellationTokenSource();
            async Task Sender(int id)
            {
                while (!stopSending.IsCancellationRequested)
                {
                    byte[] body = ServiceApi.MessagePack(metric, [new Label("sender", id.ToString(CultureInfo.InvariantCulture))], Enumerable.Repeat(1.0, 1000), ServiceApi.Now);
                    try
                    {
                        using HttpResponseMessage response = await ServiceApi.PostAsync(client, body, "application/x-msgpack");
                        if (response.StatusCode == HttpStatusCode.OK)
                        {
                            using JsonDocument answer = await JsonDocument.ParseAsync(await response.Content.ReadAsStreamAsync());
                            Interlocked.Add(ref accepted, answer.RootElement.GetProperty("accepted").GetInt64());
                        }
                    }
                    catch (Exception e) when (e is HttpRequestException or TaskCanceledException or IOException)
                    {
                        Interlocked.Add(ref unanswered, 1000);
                        return;
                    }
                }
            }

            Task[] senders = [.. Enumerable.Range(0, 4).Select(i => Task.Run(() => Sender(i)))];
            await Task.Delay(TimeSpan.FromSeconds(4));

            // What is counted and acknowledged now must survive the kill that follows.
            long countedNow = Figures(await StatisticsAsync(client, metric))?.Count ?? 0;
            double emittedNow = MetricsText.Value(await client.GetStringAsync(new Uri("/metrics", UriKind.Relative)), "monitoring_stream_windows_emitted_total");
            await Poll.UntilAsync<string>(
                async () => MetricsText.Value(await client.GetStringAsync(new Uri("/metrics", UriKind.Relative)), "monitoring_stream_sink_batches_written_total{sink=\"arrow-files\"}") >= emittedNow ? "ok" : null,
                TimeSpan.FromSeconds(60),
                $"run {run}: the store acknowledging what was emitted");
            lowerBound = Math.Max(lowerBound, countedNow);
            await Task.Delay(random.Next(0, 1500)); // the kill lands somewhere in the store's writing
            server.Process.Kill();
            Assert.Equal(137, await server.WaitForExitAsync(TimeSpan.FromSeconds(30)));
            await stopSending.CancelAsync();
            Task all = Task.WhenAll(senders);
            Assert.True(await Task.WhenAny(all, Task.Delay(TimeSpan.FromSeconds(30))) == all, "the senders did not notice the kill");
        }

        await using (ServerProcess last = await ServerProcess.StartAsync(environment: settings, dataDirectory: data.Path))
        {
            using HttpClient client = Client(last);
            string metricsText = await client.GetStringAsync(new Uri("/metrics", UriKind.Relative));
            Assert.True(MetricsText.Value(metricsText, "monitoring_stream_store_files_set_aside") == 0, $"a file was set aside after a kill. Output:\n{last.Output}");
            (long stored, double sum) = await StoreFiles.ReadAsync(windows, metric);
            long counted = Figures(await StatisticsAsync(client, metric))?.Count ?? 0;
            Assert.True(counted == stored && sum == stored, $"the statistics count {counted} points, the store's files hold {stored} (sum {sum})");
            Assert.True(counted >= lowerBound && counted <= accepted + unanswered, $"counted {counted}, acknowledged before a kill {lowerBound}, accepted {accepted} + unanswered {unanswered}");
            Assert.True(lowerBound > 0, "nothing was counted before the kills: the test proved nothing");
            last.Terminate();
            Assert.Equal(0, await last.WaitForExitAsync(TimeSpan.FromSeconds(60)));
        }

        Assert.Empty(Directory.GetFiles(windows, "*.partial"));
    }

    [Fact]
    public async Task Probe14_QueryDataDirAgainstALiveServicesFolder_LeavesItsOpenPartialFileAloneAndCountsWhatIsPublished()
    {
        // README: `query --data-dir ./data` reads "from the store folder"; sdk.md: given only a folder, it reads every file
        // as another run's. An operator runs it beside the live service: it must not recover (rename, cut, finish) the
        // partial file the service is still appending to, and after the service's graceful stop it counts every point.
        using var data = new TempDirectory();
        Dictionary<string, string> settings = Settings(("Pipeline__WindowSize", "00:00:01"), ("Pipeline__AllowedLateness", "00:00:02"), ("Pipeline__SourceIdleTimeout", "00:00:01"));
        string metric = ServiceApi.UniqueMetric("probe14_cli");
        string windows = Path.Combine(data.Path, "windows");
        await using ServerProcess server = await ServerProcess.StartAsync(environment: settings, dataDirectory: data.Path);
        using HttpClient client = Client(server);
        await PostPartAsync(client, metric, "a", 300, 1);
        await WaitClosedAndAcknowledgedAsync(client, metric, 300);
        string[] partialBefore = Directory.GetFiles(windows, "*.partial");
        Assert.True(partialBefore.Length == 1, $"expected the service's one open partial file, found {partialBefore.Length}");
        long lengthBefore = new FileInfo(partialBefore[0]).Length;

        async Task<(int Exit, string Output)> QueryAsync()
        {
            await using ServerProcess cli = ServerProcess.Launch(["query", "--data-dir", data.Path, "--metric", metric, "--json"]);
            int exit = await cli.WaitForExitAsync(TimeSpan.FromSeconds(60));
            return (exit, cli.Output);
        }

        (int exit, string output) = await QueryAsync();
        Assert.True(exit == 0, $"query --data-dir: exit {exit}: {output}");
        Assert.True(File.Exists(partialBefore[0]), $"query --data-dir moved the live service's partial file away: {string.Join(", ", Directory.GetFiles(windows).Select(Path.GetFileName))}");
        Assert.True(new FileInfo(partialBefore[0]).Length >= lengthBefore, "query --data-dir cut the live service's partial file");
        Assert.Empty(Directory.GetFiles(windows, "*.arrow"));

        // The service goes on writing into that file and publishes it at its stop: both parts there, once.
        await PostPartAsync(client, metric, "b", 200, 1000);
        await WaitClosedAndAcknowledgedAsync(client, metric, 500);
        string text = await client.GetStringAsync(new Uri("/metrics", UriKind.Relative));
        Assert.Equal(0, MetricsText.Value(text, "monitoring_stream_store_write_errors_total"));
        server.Terminate();
        Assert.Equal(0, await server.WaitForExitAsync(TimeSpan.FromSeconds(60)));
        (long stored, _) = await StoreFiles.ReadAsync(windows, metric);
        Assert.True(stored == 500, $"the store's files hold {stored} of the 500 points after the stop");

        (exit, output) = await QueryAsync();
        Assert.True(exit == 0, $"query --data-dir after the stop: exit {exit}: {output}");
        int start = output.IndexOf('{', StringComparison.Ordinal);
        Assert.True(start >= 0, $"no JSON: {output}");
        using JsonDocument answer = JsonDocument.Parse(output[start..]);
        (long Count, double, double, double)? f = Figures(answer.RootElement);
        Assert.True(f?.Count == 500, $"query --data-dir counts {f?.Count} of 500: {output}");
    }

    [Fact]
    public async Task Probe14_SigTermWithARemoteWriteReceiverThatNeverAnswers_AnyAnswerWhileStoppingIs503_ExitsAtTheShutdownTimeout_StoreKeepsAll()
    {
        // docs/http-api.md, Health: /health/ready is 503 "while starting or stopping"; ingest answers 503 `stopping` "the
        // service is stopping". docs/configuration.md: Pipeline:ShutdownTimeout is the "longest graceful stop". README:
        // sinks are independent; "open windows go to the store". A receiver that never answers holds the remote-write sink,
        // so the graceful stop lasts until the 6 s shutdown timeout; every request sent meanwhile is told the truth.
        await using var receiver = new SilentReceiver();
        int port = receiver.Port;
        using var data = new TempDirectory();
        await using ServerProcess server = await ServerProcess.StartAsync(
            ["--remote-write-url", $"http://127.0.0.1:{port}/api/v1/write"],
            Settings(("Pipeline__WindowSize", "00:00:01"), ("Pipeline__AllowedLateness", "00:00:03"), ("Pipeline__SourceIdleTimeout", "00:00:01"), ("Pipeline__ShutdownTimeout", "00:00:06")),
            data.Path);
        using HttpClient client = Client(server);
        string metric = ServiceApi.UniqueMetric("probe14_stopping_ready");
        await PostPartAsync(client, metric, "a", 300, 1);
        await Poll.UntilAsync<string>(
            () => Task.FromResult(receiver.Connections > 0 ? "ok" : null),
            TimeSpan.FromSeconds(60),
            "the remote-write sink connecting to the receiver");
        await PostPartAsync(client, metric, "b", 200, 1000); // in an open window at the stop

        server.Terminate();
        var clock = Stopwatch.StartNew();
        var wrong = new List<string>();
        var seen = new SortedDictionary<string, int>(StringComparer.Ordinal);
        int answeredAfterStopping = 0;
        using var quick = new HttpClient { BaseAddress = server.Address, Timeout = TimeSpan.FromSeconds(10) };
        while (!server.Process.HasExited && clock.Elapsed < TimeSpan.FromSeconds(60))
        {
            bool stopping = server.Output.Contains("stopping gracefully", StringComparison.Ordinal);
            foreach (bool post in new[] { false, true })
            {
                string what = post ? "POST /api/v1/points" : "GET /health/ready";
                try
                {
                    using HttpResponseMessage response = post
                        ? await ServiceApi.PostAsync(quick, ServiceApi.MessagePack(metric, [new Model.Label("part", "late")], [1.0], ServiceApi.Now), "application/x-msgpack")
                        : await quick.GetAsync(new Uri("/health/ready", UriKind.Relative));
                    string body = await response.Content.ReadAsStringAsync();
                    string key = $"{what} {(int)response.StatusCode}{(stopping ? " (after 'stopping')" : "")}";
                    seen[key] = seen.GetValueOrDefault(key) + 1;
                    if (stopping)
                    {
                        answeredAfterStopping++;
                        if (response.StatusCode != HttpStatusCode.ServiceUnavailable || (post && !body.Contains("stopping", StringComparison.Ordinal)))
                        {
                            wrong.Add($"{what} after 'stopping gracefully' at {clock.Elapsed.TotalSeconds:F1} s: {(int)response.StatusCode} {body}");
                        }
                    }
                }
                catch (Exception e) when (e is HttpRequestException or TaskCanceledException)
                {
                    string key = $"{what} {e.GetType().Name}";
                    seen[key] = seen.GetValueOrDefault(key) + 1;
                }
            }

            await Task.Delay(100);
        }

        int exit = await server.WaitForExitAsync(TimeSpan.FromSeconds(60));
        TimeSpan took = clock.Elapsed;
        string summary = $"exit {exit} after {took.TotalSeconds:F1} s; answers: {string.Join(", ", seen.Select(p => $"{p.Key} x{p.Value}"))}";
        output.WriteLine(summary);
        Assert.True(wrong.Count == 0, string.Join("\n", wrong.Take(6)) + "\n" + summary);
        Assert.True(took < TimeSpan.FromSeconds(40), $"a 6 s shutdown timeout, yet the process ran on: {summary}\n{server.Output}");

        // The store is not held by the other sink: every point accepted before the stop is in it, and none of the
        // points refused while stopping.
        SortedDictionary<string, (long Count, double Sum, double Min, double Max)> stored = await ReadStoreByPartAsync(Path.Combine(data.Path, "windows"), metric);
        Assert.True(stored.GetValueOrDefault("a").Count == 300 && stored.GetValueOrDefault("b").Count == 200, $"the store holds {Show(stored)}; {summary}\n{server.Output}");
        Assert.True(!stored.ContainsKey("late") || answeredAfterStopping == 0 || seen.Keys.Any(k => k.StartsWith("POST /api/v1/points 200", StringComparison.Ordinal)),
            $"points refused while stopping are in the store: {Show(stored)}; {summary}");
    }

    /// <summary>part label → (count, sum, min, max) of <paramref name="metric"/> over the store's published files.</summary>
    private static async Task<SortedDictionary<string, (long Count, double Sum, double Min, double Max)>> ReadStoreByPartAsync(string directory, string metric)
    {
        var parts = new SortedDictionary<string, (long Count, double Sum, double Min, double Max)>(StringComparer.Ordinal);
        foreach (string file in Directory.GetFiles(directory, "*.arrow"))
        {
            using FileStream stream = File.OpenRead(file);
            using var reader = new ArrowFileReader(stream);
            int batches = await reader.RecordBatchCountAsync();
            for (int i = 0; i < batches; i++)
            {
                using RecordBatch batch = await reader.ReadRecordBatchAsync(i, CancellationToken.None);
                var metrics = (StringArray)batch.Column("metric");
                var labels = (MapArray)batch.Column("labels");
                var keys = (StringArray)labels.Keys;
                var values = (StringArray)labels.Values;
                var counts = (Int64Array)batch.Column("count");
                var sums = (DoubleArray)batch.Column("sum");
                var mins = (DoubleArray)batch.Column("min");
                var maxes = (DoubleArray)batch.Column("max");
                for (int row = 0; row < batch.Length; row++)
                {
                    if (metrics.GetString(row) != metric)
                    {
                        continue;
                    }

                    string part = "(none)";
                    for (int j = labels.ValueOffsets[row]; j < labels.ValueOffsets[row + 1]; j++)
                    {
                        if (keys.GetString(j) == "part")
                        {
                            part = values.GetString(j);
                        }
                    }

                    (long c, double s, double mn, double mx) = parts.GetValueOrDefault(part, (0, 0, double.MaxValue, double.MinValue));
                    parts[part] = (c + counts.GetValue(row)!.Value, s + sums.GetValue(row)!.Value, Math.Min(mn, mins.GetValue(row)!.Value), Math.Max(mx, maxes.GetValue(row)!.Value));
                }
            }
        }

        return parts;
    }

}
