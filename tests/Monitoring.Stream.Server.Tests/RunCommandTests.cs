using System.Net;
using System.Net.Http.Headers;
using System.Text.Json;
using Monitoring.Stream.Server.Tests.Support;
using Monitoring.Stream.Tests.Support;

namespace Monitoring.Stream.Server.Tests;

/// <summary><c>monitoring-stream run</c> as a process: configuration precedence and validation, security at start-up, clean stop on SIGTERM.</summary>
public class RunCommandTests
{
    [Fact]
    public async Task Run_SigTerm_FlushesOpenWindowsIntoTheStore()
    {
        // One-minute windows: the points below are in an open window when SIGTERM comes.
        await using ServerProcess server = await ServerProcess.StartAsync(environment: new Dictionary<string, string>
        {
            ["MONITORING_STREAM__Pipeline__WindowSize"] = "00:01:00",
            ["MONITORING_STREAM__SystemMetricsEnabled"] = "false",
        });
        using var client = new HttpClient { BaseAddress = server.Address, Timeout = TimeSpan.FromSeconds(30) };
        string metric = ServiceApi.UniqueMetric("sigterm");
        long now = ServiceApi.Now;
        double[] values = [.. Enumerable.Range(0, 1000).Select(i => i * 0.5)];
        using (HttpResponseMessage response = await ServiceApi.PostAsync(client, ServiceApi.MessagePack(metric, [new("k", "v")], values, now), "application/x-msgpack"))
        {
            Assert.Equal(HttpStatusCode.OK, response.StatusCode);
            Assert.Equal(1000, (await ServiceApi.JsonAsync(response)).GetProperty("accepted").GetInt32());
        }

        JsonElement before = await ServiceApi.GetJsonAsync(client, $"/api/v1/statistics?metric={metric}&window=1h");
        bool openBeforeStop = before.GetProperty("statistics").ValueKind == JsonValueKind.Null;

        server.Terminate();
        int exit = await server.WaitForExitAsync(TimeSpan.FromSeconds(60));
        Assert.True(exit == 0, $"exit code {exit}. Output:\n{server.Output}");
        Assert.Contains("stopped (Stopped)", server.Output, StringComparison.Ordinal);

        (long count, double sum) = await StoreFiles.ReadAsync(Path.Combine(server.DataDirectory, "windows"), metric);
        Assert.True(openBeforeStop || count == 1000, "the window had closed before the stop (the test proves nothing then)");
        Assert.Equal(1000, count);
        Assert.Equal(values.Sum(), sum);

        // query reads the same store folder without a service.
        await using ServerProcess query = ServerProcess.Launch(["query", "--data-dir", server.DataDirectory, "--metric", metric, "--window", "1h", "--json"]);
        Assert.True(await query.WaitForExitAsync(TimeSpan.FromSeconds(60)) == 0, query.Output);
        using JsonDocument answer = JsonDocument.Parse(query.Output);
        JsonElement statistics = answer.RootElement.GetProperty("statistics");
        Assert.Equal(1000, statistics.GetProperty("count").GetInt64());
        Assert.Equal(values.Sum(), statistics.GetProperty("sum").GetDouble());
        Assert.Equal(499.5, statistics.GetProperty("max").GetDouble());
    }

    [Fact]
    public async Task Run_BeyondLoopbackWithoutToken_RefusesToStart()
    {
        await using ServerProcess server = ServerProcess.Launch(["run", "--urls", "http://0.0.0.0:0"]);
        int exit = await server.WaitForExitAsync(TimeSpan.FromSeconds(60));
        Assert.Equal(2, exit);
        Assert.Contains("MonitoringStream:Server:ApiToken (--api-token)", server.Output, StringComparison.Ordinal);
        Assert.DoesNotContain("listening on", server.Output, StringComparison.Ordinal);
    }

    [Fact]
    public async Task Run_BeyondLoopbackWithToken_Starts_And401WithoutIt()
    {
        await using ServerProcess server = await ServerProcess.StartAsync(["--urls", "http://0.0.0.0:0", "--api-token", "a-long-enough-token-123"]);
        var address = new Uri($"http://127.0.0.1:{server.Address.Port}");
        using var client = new HttpClient { BaseAddress = address, Timeout = TimeSpan.FromSeconds(30) };
        using HttpResponseMessage anonymous = await client.GetAsync(new Uri("/api/v1/metrics", UriKind.Relative));
        Assert.Equal(HttpStatusCode.Unauthorized, anonymous.StatusCode);
        client.DefaultRequestHeaders.Authorization = new AuthenticationHeaderValue("Bearer", "a-long-enough-token-123");
        using HttpResponseMessage authorized = await client.GetAsync(new Uri("/api/v1/metrics", UriKind.Relative));
        Assert.Equal(HttpStatusCode.OK, authorized.StatusCode);
    }

    [Theory]
    [InlineData("MONITORING_STREAM__Pipeline__ShardCount", "0", "MonitoringStream:Pipeline:ShardCount = 0: must be between 1 and 1024.")]
    [InlineData("MONITORING_STREAM__Pipeline__WindowSize", "abc", "'abc' at 'MonitoringStream:Pipeline:WindowSize'")]
    [InlineData("MONITORING_STREAM__Server__MaxPointsPerRequest", "0", "MonitoringStream:Server:MaxPointsPerRequest = 0: must be between")]
    public async Task Run_InvalidSetting_RefusesToStartNamingTheSetting(string variable, string value, string message)
    {
        await using ServerProcess server = ServerProcess.Launch(["run", "--urls", "http://127.0.0.1:0"], new Dictionary<string, string> { [variable] = value });
        int exit = await server.WaitForExitAsync(TimeSpan.FromSeconds(60));
        Assert.True(exit == 2, $"exit code {exit}. Output:\n{server.Output}");
        Assert.Contains(message, server.Output, StringComparison.Ordinal);
        Assert.DoesNotContain("   at ", server.Output, StringComparison.Ordinal); // a message, not a stack trace
    }

    [Fact]
    public async Task Run_DataDirIsAFile_RefusesToStartNamingTheSetting()
    {
        using var data = new TempDirectory();
        string file = Path.Combine(data.Path, "not-a-folder");
        await File.WriteAllTextAsync(file, "x");
        await using ServerProcess server = ServerProcess.Launch(["run", "--urls", "http://127.0.0.1:0", "--data-dir", file]);
        int exit = await server.WaitForExitAsync(TimeSpan.FromSeconds(60));
        Assert.True(exit == 2, $"exit code {exit}. Output:\n{server.Output}");
        Assert.Contains($"DataDirectory (--data-dir) = {file}: is a file; it must name a folder", server.Output, StringComparison.Ordinal);
        Assert.DoesNotContain("   at ", server.Output, StringComparison.Ordinal);
    }

    [Fact]
    public async Task Run_Configuration_FlagsOverrideEnvironmentOverrideAppSettings()
    {
        using var data = new TempDirectory();
        // appsettings.json (in the working folder) says 0 shards, which alone would refuse to start; the
        // environment says 3; the environment also says to listen beyond loopback, which the --urls flag overrides.
        await File.WriteAllTextAsync(Path.Combine(data.Path, "appsettings.json"), """{ "MonitoringStream": { "Pipeline": { "ShardCount": 0, "WindowSize": "00:00:07" } } }""");
        await using ServerProcess server = await ServerProcess.StartAsync(environment: new Dictionary<string, string>
        {
            ["MONITORING_STREAM__Pipeline__ShardCount"] = "3",
            ["MONITORING_STREAM__Server__Urls"] = "http://0.0.0.0:0",
        }, dataDirectory: data.Path);
        Assert.Contains("windows 7 s, lateness 5 s, 3 shards", server.Output, StringComparison.Ordinal);
        Assert.Equal("127.0.0.1", server.Address.Host);
        server.Terminate();
        Assert.Equal(0, await server.WaitForExitAsync(TimeSpan.FromSeconds(60)));
    }

}
