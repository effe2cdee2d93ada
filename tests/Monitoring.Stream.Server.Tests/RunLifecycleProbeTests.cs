using System.Diagnostics;
using System.Net;
using System.Net.Sockets;
using System.Text.Json;
using Monitoring.Stream.Server.Tests.Support;
using Monitoring.Stream.Tests.Support;

namespace Monitoring.Stream.Server.Tests;

/// <summary>
/// <c>monitoring-stream run</c> as a process under hostile conditions, from README.md, docs/http-api.md,
/// docs/operations.md and docs/arrow-schema.md alone: SIGTERM under load, SIGKILL and a restart on the same data
/// folder with a damaged file in it, a data folder that cannot be created, a remote-write receiver that never answers.
/// </summary>
public class RunLifecycleProbeTests
{
    private static readonly Dictionary<string, string> s_quiet = new()
    {
        ["MONITORING_STREAM__SystemMetricsEnabled"] = "false",
        ["MONITORING_STREAM__Pipeline__ShardCount"] = "2",
    };

    private static Dictionary<string, string> Settings(params (string Key, string Value)[] more)
    {
        var all = new Dictionary<string, string>(s_quiet);
        foreach ((string key, string value) in more)
        {
            all["MONITORING_STREAM__" + key] = value;
        }

        return all;
    }


    /// <summary>docs/event-time.md's identities, read from one scrape of /metrics.</summary>
    private static void AssertAccounting(string text)
    {
        double offered = MetricsText.Value(text, "monitoring_stream_points_offered_total");
        double accepted = MetricsText.Value(text, "monitoring_stream_points_accepted_total");
        double rejected = MetricsText.Sum(text, "monitoring_stream_points_rejected_total");
        double dropped = MetricsText.Sum(text, "monitoring_stream_points_dropped_total");
        double pending = MetricsText.Value(text, "monitoring_stream_points_pending");
        double emitted = MetricsText.Value(text, "monitoring_stream_points_emitted_total");
        double late = MetricsText.Sum(text, "monitoring_stream_points_late_total");
        double open = MetricsText.Value(text, "monitoring_stream_points_open_windows");
        double queued = MetricsText.Value(text, "monitoring_stream_points_queued");
        double faulted = MetricsText.Value(text, "monitoring_stream_points_faulted_total");
        double stale = MetricsText.Value(text, "monitoring_stream_points_stale_total");
        Assert.True(offered == accepted + rejected + dropped + pending, $"offered {offered} != accepted {accepted} + rejected {rejected} + dropped {dropped} + pending {pending}");
        Assert.True(
            accepted == emitted + late + open + queued + faulted + stale,
            $"accepted {accepted} != emitted {emitted} + late {late} + open {open} + queued {queued} + faulted {faulted} + stale {stale}");
        Assert.True(pending >= 0 && queued >= 0 && open >= 0, "a remainder is negative");
    }

    [Fact]
    public async Task Run_SigTermDuringLoad_ExitsZeroAndEveryAcknowledgedPointIsInTheStore()
    {
        // One-minute windows: every point of the run is in an open window when SIGTERM comes, so only the stop flushes it.
        await using ServerProcess server = await ServerProcess.StartAsync(environment: Settings(("Pipeline__WindowSize", "00:01:00")));
        using var client = new HttpClient { BaseAddress = server.Address, Timeout = TimeSpan.FromSeconds(20) };
        string metric = ServiceApi.UniqueMetric("sigterm_load");
        const int PerRequest = 500;
        long acceptedInAnswers = 0;
        long rejectedInAnswers = 0;
        long refusedPoints = 0;
        long unanswered = 0;
        long requests = 0;
        using var enough = new CancellationTokenSource();
        async Task Sender(int id)
        {
            for (int r = 0; ; r++)
            {
                byte[] body = ServiceApi.MessagePack(metric, [new("sender", id.ToString(System.Globalization.CultureInfo.InvariantCulture))], Enumerable.Repeat(1.0, PerRequest), ServiceApi.Now);
                HttpResponseMessage response;
                try
                {
                    response = await ServiceApi.PostAsync(client, body, "application/x-msgpack");
                }
                catch (Exception e) when (e is HttpRequestException or TaskCanceledException)
                {
                    // Connection refused: the service is gone. Anything else (reset mid-answer) is unknown.
                    if (e is HttpRequestException { InnerException: SocketException { SocketErrorCode: SocketError.ConnectionRefused } })
                    {
                        return;
                    }

                    Interlocked.Add(ref unanswered, PerRequest);
                    if (server.Process.HasExited)
                    {
                        return;
                    }

                    continue;
                }

                using (response)
                {
                    Interlocked.Increment(ref requests);
                    if (response.StatusCode == HttpStatusCode.OK)
                    {
                        using JsonDocument answer = JsonDocument.Parse(await response.Content.ReadAsStringAsync());
                        Interlocked.Add(ref acceptedInAnswers, answer.RootElement.GetProperty("accepted").GetInt64());
                        Interlocked.Add(ref rejectedInAnswers, answer.RootElement.GetProperty("rejected").GetInt64());
                    }
                    else
                    {
                        Assert.True(
                            response.StatusCode is HttpStatusCode.ServiceUnavailable or HttpStatusCode.TooManyRequests,
                            $"{(int)response.StatusCode} {await response.Content.ReadAsStringAsync()}");
                        Interlocked.Add(ref refusedPoints, PerRequest);
                    }
                }

                if (server.Process.HasExited)
                {
                    return;
                }
            }
        }

        Task[] senders = [.. Enumerable.Range(0, 4).Select(i => Task.Run(() => Sender(i)))];
        var clock = Stopwatch.StartNew();
        while (Interlocked.Read(ref requests) < 40)
        {
            Assert.True(clock.Elapsed < TimeSpan.FromSeconds(60), "the senders did not get 40 answers within 60 s");
            await Task.Delay(50);
        }

        // Mid-load, one scrape: the identities hold at any moment.
        AssertAccounting(await client.GetStringAsync(new Uri("/metrics", UriKind.Relative)));

        server.Terminate();
        int exit = await server.WaitForExitAsync(TimeSpan.FromSeconds(60));
        Task all = Task.WhenAll(senders);
        Assert.True(await Task.WhenAny(all, Task.Delay(TimeSpan.FromSeconds(30))) == all, "the senders did not notice the stop");
        await all;
        Assert.True(exit == 0, $"exit code {exit}. Output:\n{server.Output}");
        Assert.Contains("stopped (Stopped)", server.Output, StringComparison.Ordinal);
        Assert.Equal(0, rejectedInAnswers);

        // Every point a 200 answer accepted is in the store; at most the points whose answer never came are added.
        (long stored, double sum) = await StoreFiles.ReadAsync(Path.Combine(server.DataDirectory, "windows"), metric);
        Assert.True(stored >= acceptedInAnswers, $"the store holds {stored} points, the answers accepted {acceptedInAnswers}");
        Assert.True(stored <= acceptedInAnswers + unanswered, $"the store holds {stored} points, more than accepted {acceptedInAnswers} + unanswered {unanswered}");
        Assert.Equal(stored, sum);
        Assert.Empty(Directory.GetFiles(Path.Combine(server.DataDirectory, "windows"), "*.partial"));
    }

    [Fact]
    public async Task Run_SigKillThenRestartOnTheSameDataDir_AcknowledgedWindowsRecoveredDamagedFileSetAside()
    {
        using var data = new TempDirectory();
        // A lateness of 5 s: on a loaded machine a request can reach the engine seconds after its points were stamped.
        Dictionary<string, string> settings = Settings(("Pipeline__WindowSize", "00:00:01"), ("Pipeline__AllowedLateness", "00:00:05"), ("Pipeline__SourceIdleTimeout", "00:00:01"));
        string metric = ServiceApi.UniqueMetric("sigkill");
        double[] values = [.. Enumerable.Range(1, 1000).Select(i => (double)i)];
        string windows = Path.Combine(data.Path, "windows");
        await using (ServerProcess first = await ServerProcess.StartAsync(environment: settings, dataDirectory: data.Path))
        {
            using var client = new HttpClient { BaseAddress = first.Address, Timeout = TimeSpan.FromSeconds(20) };
            using (HttpResponseMessage response = await ServiceApi.PostAsync(client, ServiceApi.MessagePack(metric, [], values, ServiceApi.Now), "application/x-msgpack"))
            {
                Assert.Equal(HttpStatusCode.OK, response.StatusCode);
            }

            // Wait until the window is closed (the statistics see it), then until the store has acknowledged every window
            // emitted by then (its queue is first in, first out; later windows of the service's own metrics keep coming).
            double emittedThen = 0;
            await Poll.UntilAsync<string>(
                async () =>
                {
                    JsonElement answer = await ServiceApi.GetJsonAsync(client, $"/api/v1/statistics?metric={metric}&window=10m");
                    if (answer.GetProperty("statistics").ValueKind == JsonValueKind.Null || answer.GetProperty("statistics").GetProperty("count").GetInt64() != values.Length)
                    {
                        return null;
                    }

                    emittedThen = MetricsText.Value(await client.GetStringAsync(new Uri("/metrics", UriKind.Relative)), "monitoring_stream_windows_emitted_total");
                    return "closed";
                },
                TimeSpan.FromSeconds(30),
                "the window in the statistics");
            await Poll.UntilAsync<string>(
                async () =>
                {
                    string text = await client.GetStringAsync(new Uri("/metrics", UriKind.Relative));
                    return MetricsText.Value(text, "monitoring_stream_sink_batches_written_total{sink=\"arrow-files\"}") >= emittedThen ? text : null;
                },
                TimeSpan.FromSeconds(30),
                "the store acknowledging the window");

            first.Process.Kill(); // SIGKILL: no stop, the store's file stays partial
            Assert.Equal(137, await first.WaitForExitAsync(TimeSpan.FromSeconds(30)));
            Assert.DoesNotContain("stopped (", first.Output, StringComparison.Ordinal);
        }

        Assert.NotEmpty(Directory.GetFiles(windows, "*.partial"));
        string damaged = Path.Combine(windows, "windows-19700101T000000Z-1-0.arrow");
        await File.WriteAllTextAsync(damaged, "this is not an Arrow file, but it is named like one");

        await using (ServerProcess second = await ServerProcess.StartAsync(environment: settings, dataDirectory: data.Path))
        {
            // docs/arrow-schema.md: the damaged file is moved into damaged/ with a reason beside it, never read as data.
            Assert.False(File.Exists(damaged), "the damaged file is still among the store's files");
            string aside = Path.Combine(windows, "damaged", Path.GetFileName(damaged));
            Assert.True(File.Exists(aside), $"no {aside}. Output:\n{second.Output}");
            string reason = await File.ReadAllTextAsync(aside + ".reason.txt");
            Assert.Contains("ARROW1", reason, StringComparison.Ordinal);

            // Reported to the operator: at start-up, and in /metrics beside the other counters docs/operations.md says to watch.
            Assert.Contains("1 damaged file(s) set aside", second.Output, StringComparison.Ordinal);
            Assert.Contains($"{damaged} -> {aside}", second.Output, StringComparison.Ordinal);
            Assert.Contains("partial file(s) left by an earlier run", second.Output, StringComparison.Ordinal);
            using var client = new HttpClient { BaseAddress = second.Address, Timeout = TimeSpan.FromSeconds(20) };
            string text = await client.GetStringAsync(new Uri("/metrics", UriKind.Relative));
            Assert.Equal(1, MetricsText.Value(text, "monitoring_stream_store_files_set_aside"));
            Assert.True(MetricsText.Value(text, "monitoring_stream_store_partial_files_recovered_total") >= 1, "no partial file recovered");
            Assert.Equal(0, MetricsText.Value(text, "monitoring_stream_store_pending_recoveries"));
            Assert.Equal(0, MetricsText.Value(text, "monitoring_stream_store_write_errors_total"));

            second.Terminate();
            Assert.Equal(0, await second.WaitForExitAsync(TimeSpan.FromSeconds(60)));
        }

        // The partial file of the killed run was recovered: every acknowledged point is in a published file.
        Assert.Empty(Directory.GetFiles(windows, "*.partial"));
        (long count, double sum) = await StoreFiles.ReadAsync(windows, metric);
        Assert.Equal(values.Length, count);
        Assert.Equal(values.Sum(), sum);
    }

    [Theory]
    [InlineData("/proc/monitoring-stream-probe/data")]
    [InlineData("{file}/data")]
    public async Task Run_DataDirThatCannotBeCreated_RefusesToStartNamingTheFolder(string dataDir)
    {
        using var temp = new TempDirectory();
        string file = Path.Combine(temp.Path, "a-file");
        await File.WriteAllTextAsync(file, "x");
        dataDir = dataDir.Replace("{file}", file, StringComparison.Ordinal);
        await using ServerProcess server = ServerProcess.Launch(["run", "--urls", "http://127.0.0.1:0", "--data-dir", dataDir], s_quiet, temp.Path);
        int exit = await server.WaitForExitAsync(TimeSpan.FromSeconds(60));
        Assert.True(exit == 2, $"exit code {exit}. Output:\n{server.Output}");
        Assert.Contains(dataDir, server.Output, StringComparison.Ordinal);
        Assert.DoesNotContain("monitoring-stream: listening on", server.Output, StringComparison.Ordinal);
        Assert.DoesNotContain("   at ", server.Output, StringComparison.Ordinal);
    }

    [Fact]
    public async Task Run_RemoteWriteReceiverThatNeverAnswers_HealthDashboardAndStoreKeepUpSecondSigTermStopsAtOnce()
    {
        // A receiver that accepts connections and never answers: the remote-write sink is stuck for its 30 s timeout.
        await using var receiver = new SilentReceiver();
        int port = receiver.Port;
        await using ServerProcess server = await ServerProcess.StartAsync(
            ["--remote-write-url", $"http://127.0.0.1:{port}/api/v1/write"],
            Settings(("Pipeline__WindowSize", "00:00:01"), ("Pipeline__AllowedLateness", "00:00:05"), ("Pipeline__SourceIdleTimeout", "00:00:01")));
        using var client = new HttpClient { BaseAddress = server.Address, Timeout = TimeSpan.FromSeconds(5) };
        string metric = ServiceApi.UniqueMetric("stalled_receiver");
        for (int i = 0; i < 3; i++)
        {
            using HttpResponseMessage response = await ServiceApi.PostAsync(client, ServiceApi.MessagePack(metric, [], Enumerable.Repeat(2.0, 100), ServiceApi.Now), "application/x-msgpack");
            Assert.Equal(HttpStatusCode.OK, response.StatusCode);
        }

        // The other sinks keep up: the statistics and the store see every point while the receiver hangs.
        await Poll.UntilAsync<string>(
            async () =>
            {
                JsonElement answer = await ServiceApi.GetJsonAsync(client, $"/api/v1/statistics?metric={metric}&window=10m");
                return answer.GetProperty("statistics").ValueKind != JsonValueKind.Null && answer.GetProperty("statistics").GetProperty("count").GetInt64() == 300 ? "ok" : null;
            },
            TimeSpan.FromSeconds(30),
            "the statistics of every point while the receiver hangs");
        // The sink did reach the receiver: it sends once the first window closes, which can be after the
        // statistics already answer from the recent-window store.
        await Poll.UntilAsync<string>(
            () => Task.FromResult(receiver.Connections > 0 ? "ok" : null),
            TimeSpan.FromSeconds(30),
            "the remote-write sink connecting to the receiver");

        // Health, readiness, liveness and the dashboard answer at once (the client's timeout is 5 s).
        foreach (string path in new[] { "/health", "/health/ready", "/health/live" })
        {
            using HttpResponseMessage health = await client.GetAsync(new Uri(path, UriKind.Relative));
            Assert.True(health.StatusCode is HttpStatusCode.OK or HttpStatusCode.ServiceUnavailable, $"{path}: {(int)health.StatusCode}");
        }

        JsonElement dashboard = await ServiceApi.GetJsonAsync(client, "/api/v1/dashboard?window=5m");
        JsonElement[] sinks = [.. dashboard.GetProperty("engine").GetProperty("sinks").EnumerateArray()];
        Assert.Contains(sinks, s => s.GetProperty("name").GetString() == "remote-write");
        Assert.True(dashboard.GetProperty("engine").GetProperty("offered").GetInt64() >= 300);
        AssertAccounting(await client.GetStringAsync(new Uri("/metrics", UriKind.Relative)));

        // The store has every window emitted by now (its queue is first in, first out).
        double emittedNow = MetricsText.Value(await client.GetStringAsync(new Uri("/metrics", UriKind.Relative)), "monitoring_stream_windows_emitted_total");
        await Poll.UntilAsync<string>(
            async () => MetricsText.Value(await client.GetStringAsync(new Uri("/metrics", UriKind.Relative)), "monitoring_stream_sink_batches_written_total{sink=\"arrow-files\"}") >= emittedNow ? "ok" : null,
            TimeSpan.FromSeconds(30),
            "the store acknowledging every emitted window");

        // SIGTERM: a graceful stop that waits for the receiver (up to the 30 s shutdown timeout); the second SIGTERM
        // stops at once (README: "Ctrl+C once stops it cleanly, twice at once").
        server.Terminate();
        await Poll.UntilAsync<string>(
            () => Task.FromResult(server.Output.Contains("stopping gracefully", StringComparison.Ordinal) ? "ok" : null),
            TimeSpan.FromSeconds(10),
            "the service saying it stops gracefully");
        await Task.Delay(TimeSpan.FromSeconds(1)); // a repeat within 300 ms counts as the same signal (README)
        var clock = Stopwatch.StartNew();
        server.Terminate();
        int exit = await server.WaitForExitAsync(TimeSpan.FromSeconds(45));
        Assert.True(clock.Elapsed < TimeSpan.FromSeconds(15), $"the second SIGTERM took {clock.Elapsed.TotalSeconds:F1} s to stop the service (the shutdown timeout is 30 s). Output:\n{server.Output}");
        Assert.True(exit is 0 or 1 or 2, $"exit code {exit}. Output:\n{server.Output}");
        (long count, double sum) = await StoreFiles.ReadAsync(Path.Combine(server.DataDirectory, "windows"), metric);
        Assert.Equal(300, count);
        Assert.Equal(600.0, sum);
    }
}
