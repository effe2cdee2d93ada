using System.Diagnostics;
using System.Net;
using System.Text.Json;
using Monitoring.Stream.Server.Tests.Support;

namespace Monitoring.Stream.Server.Tests;

/// <summary>
/// <c>Server:StopDrainDelay</c> (configuration.md): after the first signal the service goes on serving for the delay,
/// not ready (/health/ready 503) and refusing ingest with 503 <c>stopping</c>, then stops gracefully; a second signal
/// skips the rest of the delay. Without it the listener closes as the stop begins.
/// </summary>
public class StopDrainTests
{
    private static Dictionary<string, string> Settings(string delay) => new()
    {
        ["MONITORING_STREAM__SystemMetricsEnabled"] = "false",
        ["MONITORING_STREAM__Pipeline__ShardCount"] = "2",
        ["MONITORING_STREAM__Pipeline__WindowSize"] = "00:00:01",
        ["MONITORING_STREAM__Pipeline__AllowedLateness"] = "00:00:01",
        ["MONITORING_STREAM__Pipeline__SourceIdleTimeout"] = "00:00:01",
        ["MONITORING_STREAM__Server__StopDrainDelay"] = delay,
    };

    [Fact]
    public async Task FirstSignal_DuringTheDrainDelay_NotReadyIngestRefusedAsStoppingLiveAnswered_ThenStopsKeepingEveryAcceptedPoint()
    {
        await using ServerProcess server = await ServerProcess.StartAsync(environment: Settings("00:00:08"));
        using var client = new HttpClient { BaseAddress = server.Address, Timeout = TimeSpan.FromSeconds(30) };
        string metric = ServiceApi.UniqueMetric("drain");
        using (HttpResponseMessage before = await ServiceApi.PostAsync(client, ServiceApi.MessagePack(metric, [], [1, 2, 3], ServiceApi.Now), "application/x-msgpack"))
        {
            Assert.Equal(HttpStatusCode.OK, before.StatusCode);
        }

        using (HttpResponseMessage ready = await client.GetAsync(new Uri("/health/ready", UriKind.Relative)))
        {
            Assert.Equal(HttpStatusCode.OK, ready.StatusCode);
        }

        // Their window closed and answered before the signal (1 s windows, 1 s lateness, 1 s source idle timeout).
        await Poll.UntilAsync(
            async () =>
            {
                JsonElement st = (await ServiceApi.GetJsonAsync(client, $"/api/v1/statistics?metric={metric}&window=1h")).GetProperty("statistics");
                return st.ValueKind == JsonValueKind.Object && st.GetProperty("count").GetInt64() == 3 ? "ok" : null;
            },
            TimeSpan.FromSeconds(30),
            "the three points answered by a query");

        var clock = Stopwatch.StartNew();
        server.Terminate();
        await Poll.UntilAsync<string>(
            () => Task.FromResult(server.Output.Contains("draining for 8 s", StringComparison.Ordinal) ? "ok" : null),
            TimeSpan.FromSeconds(10),
            "the service saying it drains");

        using (HttpResponseMessage ready = await client.GetAsync(new Uri("/health/ready", UriKind.Relative)))
        {
            string body = await ready.Content.ReadAsStringAsync();
            Assert.True(ready.StatusCode == HttpStatusCode.ServiceUnavailable, $"/health/ready while draining: {(int)ready.StatusCode} {body}");
            Assert.Contains("stopping", body, StringComparison.Ordinal);
        }

        using (HttpResponseMessage live = await client.GetAsync(new Uri("/health/live", UriKind.Relative)))
        {
            Assert.Equal(HttpStatusCode.OK, live.StatusCode);
        }

        using (HttpResponseMessage during = await ServiceApi.PostAsync(client, ServiceApi.MessagePack(metric, [], [100], ServiceApi.Now), "application/x-msgpack"))
        {
            JsonElement answer = await ServiceApi.JsonAsync(during);
            Assert.Equal(HttpStatusCode.ServiceUnavailable, during.StatusCode);
            Assert.Equal("stopping", answer.GetProperty("reason").GetString());
            Assert.True(during.Headers.RetryAfter is not null, "a 503 stopping carries Retry-After");
        }

        // Queries still answer while draining: the points accepted before the signal are there.
        JsonElement during2 = (await ServiceApi.GetJsonAsync(client, $"/api/v1/statistics?metric={metric}&window=1h")).GetProperty("statistics");
        Assert.Equal(3, during2.GetProperty("count").GetInt64());
        Assert.Equal(6, during2.GetProperty("sum").GetDouble());

        int exit = await server.WaitForExitAsync(TimeSpan.FromSeconds(60));
        Assert.True(exit == 0, $"exit code {exit}. Output:\n{server.Output}");
        Assert.True(clock.Elapsed >= TimeSpan.FromSeconds(7), $"stopped {clock.Elapsed.TotalSeconds:F1} s after the signal, before the 8 s drain. Output:\n{server.Output}");
        Assert.Contains("stopped (Stopped)", server.Output, StringComparison.Ordinal);
        Assert.Contains("rejected 0", server.Output, StringComparison.Ordinal);
    }

    [Fact]
    public async Task SecondSignal_DuringTheDrainDelay_SkipsTheRestAndStops()
    {
        await using ServerProcess server = await ServerProcess.StartAsync(environment: Settings("00:05:00"));
        server.Terminate();
        await Poll.UntilAsync<string>(
            () => Task.FromResult(server.Output.Contains("draining for 300 s", StringComparison.Ordinal) ? "ok" : null),
            TimeSpan.FromSeconds(10),
            "the service saying it drains");
        await Task.Delay(TimeSpan.FromSeconds(1)); // a repeat within 300 ms counts as the same signal (README)
        var clock = Stopwatch.StartNew();
        server.Terminate();
        int exit = await server.WaitForExitAsync(TimeSpan.FromSeconds(60));
        Assert.True(clock.Elapsed < TimeSpan.FromSeconds(30), $"the second signal took {clock.Elapsed.TotalSeconds:F1} s to stop a 300 s drain. Output:\n{server.Output}");
        Assert.True(exit is 0 or 1 or 2, $"exit code {exit}. Output:\n{server.Output}");
        Assert.Contains("stopped (", server.Output, StringComparison.Ordinal);
    }

    [Theory]
    [InlineData("-00:00:01")]
    [InlineData("00:10:00.001")]
    public async Task DelayOutOfRange_StartRefusedNamingTheSetting(string delay)
    {
        await using ServerProcess server = ServerProcess.Launch(["run"], Settings(delay));
        int exit = await server.WaitForExitAsync(TimeSpan.FromSeconds(60));
        Assert.NotEqual(0, exit);
        Assert.Contains("StopDrainDelay", server.Output, StringComparison.Ordinal);
        Assert.Contains("from 0 to 10 minutes", server.Output, StringComparison.Ordinal);
    }
}
