using System.Diagnostics;
using System.Net;
using System.Text.Json;
using Monitoring.Stream.Server.Api;
using Monitoring.Stream.Server.Tests.Support;

namespace Monitoring.Stream.Server.Tests;

/// <summary>The query, dashboard, metrics, health and OpenAPI endpoints of the running executable.</summary>
[Collection(SharedServerGroup.Name)]
public class ApiEndpointsTests(SharedServer server)
{
    [Fact]
    public async Task Dashboard_Window_ReturnsDashboardData()
    {
        JsonElement dashboard = await ServiceApi.GetJsonAsync(server.Client, "/api/v1/dashboard?window=5m");
        Assert.Equal(300, dashboard.GetProperty("windowSeconds").GetDouble());
        Assert.Equal("Healthy", dashboard.GetProperty("health").GetProperty("status").GetString());
        JsonElement engine = dashboard.GetProperty("engine");
        Assert.True(engine.GetProperty("offered").GetInt64() >= engine.GetProperty("accepted").GetInt64());
        Assert.Contains(engine.GetProperty("sinks").EnumerateArray(), s => s.GetProperty("name").GetString() == "metric-catalog");
        Assert.True(dashboard.TryGetProperty("requests", out _));
        Assert.True(dashboard.TryGetProperty("system", out _));
    }

    [Theory]
    [InlineData("/api/v1/dashboard?window=forever", "window")]
    [InlineData("/api/v1/statistics?window=1h", "metric")]
    [InlineData("/api/v1/statistics?metric=m&window=0s", "window")]
    [InlineData("/api/v1/statistics?metric=m&label.__bad=1", "label")]
    public async Task Queries_BadParameters_Return400NamingTheParameter(string path, string parameter)
    {
        JsonElement problem = await ServiceApi.GetJsonAsync(server.Client, path, HttpStatusCode.BadRequest);
        Assert.Contains($"'{parameter}", problem.GetProperty("detail").GetString(), StringComparison.Ordinal);
    }

    [Fact]
    public async Task Statistics_UnknownMetric_ReturnsNullStatistics()
    {
        JsonElement answer = await ServiceApi.GetJsonAsync(server.Client, "/api/v1/statistics?metric=never_seen_metric&window=1h");
        Assert.Equal(JsonValueKind.Null, answer.GetProperty("statistics").ValueKind);
        Assert.Empty(answer.GetProperty("groups").EnumerateArray());
    }

    [Fact]
    public async Task Metrics_Exposition_PassesPromtoolAndCarriesHealth()
    {
        string text = await server.Client.GetStringAsync(new Uri("/metrics", UriKind.Relative));
        Assert.Contains("monitoring_stream_points_offered_total ", text, StringComparison.Ordinal);
        Assert.Contains("monitoring_stream_health_status{check=\"overall\"} 2", text, StringComparison.Ordinal);
        Assert.Contains("monitoring_stream_http_requests_total{", text, StringComparison.Ordinal);

        var start = new ProcessStartInfo("promtool", ["check", "metrics"]) { RedirectStandardInput = true, RedirectStandardOutput = true, RedirectStandardError = true };
        Process promtool;
        try
        {
            promtool = Process.Start(start)!;
        }
        catch (System.ComponentModel.Win32Exception e)
        {
            Assert.Fail("promtool (Debian package prometheus, installed by ./build.sh test) is needed: " + e.Message);
            return;
        }

        using (promtool)
        {
            await promtool.StandardInput.WriteAsync(text);
            promtool.StandardInput.Close();
            Task<string> output = promtool.StandardOutput.ReadToEndAsync();
            Task<string> errors = promtool.StandardError.ReadToEndAsync();
            using var cts = new CancellationTokenSource(TimeSpan.FromSeconds(30));
            await promtool.WaitForExitAsync(cts.Token);
            Assert.True(promtool.ExitCode == 0, $"promtool check metrics: {await output}{await errors}");
        }
    }

    [Theory]
    [InlineData("/health")]
    [InlineData("/health/live")]
    [InlineData("/health/ready")]
    public async Task Health_RunningService_Returns200WithChecks(string path)
    {
        JsonElement health = await ServiceApi.GetJsonAsync(server.Anonymous, path);
        Assert.Equal("Healthy", health.GetProperty("status").GetString());
        int checks = health.GetProperty("checks").GetArrayLength();
        Assert.True(path == "/health/live" ? checks == 0 : checks >= 2, $"{checks} checks at {path}");
    }

    [Fact]
    public async Task OpenApi_Document_ListsTheEndpoints()
    {
        JsonElement document = await ServiceApi.GetJsonAsync(server.Anonymous, "/openapi/v1.json");
        JsonElement paths = document.GetProperty("paths");
        foreach (string path in new[] { "/api/v1/points", "/api/v1/statistics", "/api/v1/metrics", "/api/v1/dashboard", "/metrics" })
        {
            Assert.True(paths.TryGetProperty(path, out _), path);
        }
    }

    [Fact]
    public async Task UnknownRoute_Returns404Problem()
    {
        JsonElement problem = await ServiceApi.GetJsonAsync(server.Client, "/api/v2/nothing", HttpStatusCode.NotFound);
        Assert.Equal(404, problem.GetProperty("status").GetInt32());
    }

    [Theory]
    [InlineData("30s", 30_000)]
    [InlineData("15m", 900_000)]
    [InlineData("1h", 3_600_000)]
    [InlineData("7d", 604_800_000)]
    [InlineData("250ms", 250)]
    [InlineData("1.5h", 5_400_000)]
    public void WindowParser_ValidSpan_Parses(string text, double milliseconds)
    {
        Assert.True(WindowParser.TryParse(text, out TimeSpan span));
        Assert.Equal(milliseconds, span.TotalMilliseconds);
    }

    [Theory]
    [InlineData("")]
    [InlineData("1")]
    [InlineData("-1h")]
    [InlineData("0m")]
    [InlineData("400d")]
    [InlineData("h")]
    public void WindowParser_InvalidSpan_IsRefused(string text) => Assert.False(WindowParser.TryParse(text, out _));
}
