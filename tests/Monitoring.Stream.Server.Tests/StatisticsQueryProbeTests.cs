using System.Net;
using System.Text.Json;
using Monitoring.Stream.Server.Tests.Support;

namespace Monitoring.Stream.Server.Tests;

/// <summary>
/// Hostile query strings for GET /api/v1/statistics, from docs/http-api.md: "400 names the parameter", one metric per
/// query, spans positive and at most 366 d, at most 500 buckets.
/// </summary>
[Collection(SharedServerGroup.Name)]
public class StatisticsQueryProbeTests(SharedServer server)
{
    [Theory]
    [InlineData("metric=a_b&metric=c_d", "metric")]           // two metrics would read as the name "a_b,c_d"
    [InlineData("metric=", "metric")]
    [InlineData("metric=a_b&window=1e308d", "window")]
    [InlineData("metric=a_b&window=-5m", "window")]
    [InlineData("metric=a_b&window=0s", "window")]
    [InlineData("metric=a_b&window=366.0000001d", "window")]
    [InlineData("metric=a_b&window=NaNs", "window")]
    [InlineData("metric=a_b&window=1h&window=2h", "window")]
    [InlineData("metric=a_b&window=1h&step=0.001ms", "step")]
    [InlineData("metric=a_b&window=366d&step=1ms", "step")]
    [InlineData("metric=a_b&window=1h&step=-1m", "step")]
    [InlineData("metric=a_b&window=1h&step=1e400s", "step")]
    [InlineData("metric=a_b&label.=v", "label.")]
    [InlineData("metric=a_b&label.k=1&label.k=2", "label.k")]
    public async Task GetStatistics_HostileQuery_400NamingTheParameter(string query, string parameter)
    {
        using HttpResponseMessage response = await server.Client.GetAsync(new Uri($"/api/v1/statistics?{query}", UriKind.Relative));
        string text = await response.Content.ReadAsStringAsync();
        Assert.True(response.StatusCode == HttpStatusCode.BadRequest, $"{query}: {(int)response.StatusCode} {text}");
        using JsonDocument problem = JsonDocument.Parse(text);
        Assert.Contains($"'{parameter}'", problem.RootElement.GetProperty("detail").GetString(), StringComparison.Ordinal);
    }
}
