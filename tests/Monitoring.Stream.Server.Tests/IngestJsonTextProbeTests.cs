using System.Net;
using System.Text;
using System.Text.Json;
using Monitoring.Stream.Server.Tests.Support;

namespace Monitoring.Stream.Server.Tests;

/// <summary>
/// JSON bodies that are valid JSON syntax but not text: an escaped UTF-16 surrogate without its pair. From docs/http-api.md:
/// "JSON that is not valid or not of the shape above" is 400 <c>malformed</c>, "a malformed batch writes nothing", and an
/// unexpected failure is a bare 500 — which such a body used to get.
/// </summary>
[Collection(SharedServerGroup.Name)]
public class IngestJsonTextProbeTests(SharedServer server)
{
    private async Task<double> HttpPointsAcceptedAsync()
    {
        string text = await server.Client.GetStringAsync(new Uri("/metrics", UriKind.Relative));
        return MetricsText.Value(text, "monitoring_stream_http_points_accepted_total");
    }

    [Theory]
    [InlineData("""{"points":[{"metric":"M","value":1},{"metric":"M","labels":{"k":"\ud800"},"value":2}]}""")]
    [InlineData("""{"points":[{"metric":"M","value":1},{"metric":"M","labels":{"k":"a\udc00b"},"value":2}]}""")]
    [InlineData("""{"points":[{"metric":"M","value":1},{"metric":"M","labels":{"k\ud800":"v"},"value":2}]}""")]
    [InlineData("""{"points":[{"metric":"M","value":1},{"metric":"M\ud800","value":2}]}""")]
    public async Task PostPoints_JsonStringWithALoneSurrogate_400MalformedNothingWritten(string template)
    {
        string metric = ServiceApi.UniqueMetric("surrogate");
        double before = await HttpPointsAcceptedAsync();
        byte[] body = Encoding.UTF8.GetBytes(template.Replace("\"M", $"\"{metric}", StringComparison.Ordinal));
        using HttpResponseMessage response = await ServiceApi.PostAsync(server.Client, body, "application/json");
        string text = await response.Content.ReadAsStringAsync();
        Assert.True(response.StatusCode == HttpStatusCode.BadRequest, $"{(int)response.StatusCode} {text}");
        using JsonDocument problem = JsonDocument.Parse(text);
        Assert.Equal("malformed", problem.RootElement.GetProperty("reason").GetString());
        Assert.Contains("surrogate", problem.RootElement.GetProperty("detail").GetString(), StringComparison.Ordinal);
        Assert.Equal(before, await HttpPointsAcceptedAsync());
    }

    [Fact]
    public async Task PostPoints_JsonEscapedSurrogatePair_AcceptedAsOneCharacter()
    {
        // The pair itself is valid text (U+1F600): the fix must not refuse it.
        string metric = ServiceApi.UniqueMetric("pair");
        byte[] body = Encoding.UTF8.GetBytes($$"""{"points":[{"metric":"{{metric}}","labels":{"k":"\ud83d\ude00"},"value":1}]}""");
        using HttpResponseMessage response = await ServiceApi.PostAsync(server.Client, body, "application/json");
        string text = await response.Content.ReadAsStringAsync();
        Assert.True(response.StatusCode == HttpStatusCode.OK, $"{(int)response.StatusCode} {text}");
        Assert.Equal(1, (await ServiceApi.JsonAsync(response)).GetProperty("accepted").GetInt32());
    }
}
