using System.Net;
using System.Text;
using System.Text.Json;
using Monitoring.Stream.Server.Tests.Support;

namespace Monitoring.Stream.Server.Tests;

/// <summary>
/// Hostile bodies for POST /api/v1/points, written from docs/http-api.md alone: "a malformed batch writes nothing",
/// "points sent = accepted + rejected (in 200 answers) + points of refused requests", and "No answer carries an
/// exception message or a stack trace".
/// </summary>
[Collection(SharedServerGroup.Name)]
public class IngestBodyProbeTests(SharedServer server)
{
    private async Task<double> HttpPointsAcceptedAsync()
    {
        string text = await server.Client.GetStringAsync(new Uri("/metrics", UriKind.Relative));
        return MetricsText.Value(text, "monitoring_stream_http_points_accepted_total");
    }

    private async Task<(HttpStatusCode Status, string Text)> PostJsonAsync(string json, string contentType = "application/json")
    {
        using HttpResponseMessage response = await ServiceApi.PostAsync(server.Client, Encoding.UTF8.GetBytes(json), contentType);
        return (response.StatusCode, await response.Content.ReadAsStringAsync());
    }

    [Theory]
    [InlineData("""{"points":[{"metric":"M","value":1}],"points":[{"metric":"M","value":2}]}""", "points")]
    [InlineData("""{"points":[{"metric":"M","value":1,"labels":{"a":"1"},"labels":{"a":"2"}}]}""", "labels")]
    [InlineData("""{"points":[{"metric":"M","value":1,"value":2}]}""", "value")]
    [InlineData("""{"points":[{"metric":"M","metric":"M2","value":1}]}""", "metric")]
    [InlineData("""{"points":[{"metric":"M","value":1,"timestamp":1,"timestamp":2}]}""", "timestamp")]
    public async Task PostPoints_JsonNamingAFieldTwice_RefusedWholeAsMalformedNothingWritten(string template, string field)
    {
        // Two "points" arrays are two batches in one body; a reader that keeps one of them drops the other's points
        // without any counter, breaking "points sent = accepted + rejected".
        string metric = ServiceApi.UniqueMetric("twice");
        double before = await HttpPointsAcceptedAsync();
        (HttpStatusCode status, string text) = await PostJsonAsync(template.Replace("\"M\"", $"\"{metric}\"", StringComparison.Ordinal).Replace("\"M2\"", $"\"{metric}_2\"", StringComparison.Ordinal));
        Assert.True(status == HttpStatusCode.BadRequest, $"{(int)status} {text}");
        using JsonDocument problem = JsonDocument.Parse(text);
        Assert.Equal("malformed", problem.RootElement.GetProperty("reason").GetString());
        Assert.Contains($"\"{field}\"", problem.RootElement.GetProperty("detail").GetString(), StringComparison.Ordinal);
        Assert.Equal(before, await HttpPointsAcceptedAsync());
    }

    [Fact]
    public async Task PostPoints_JsonLabelNamedLikeAField_IsALabelNotADuplicate()
    {
        string metric = ServiceApi.UniqueMetric("fieldlike");
        (HttpStatusCode status, string text) = await PostJsonAsync(
            $$$"""{"points":[{"metric":"{{{metric}}}","value":1,"labels":{"value":"x","metric":"y","points":"z"}}]}""");
        Assert.True(status == HttpStatusCode.OK, $"{(int)status} {text}");
        Assert.Contains("\"accepted\":1", text, StringComparison.Ordinal);
    }

    [Theory]
    [InlineData("""{"points":[{"metric":"a_b","value":1}]} trailing""")]
    [InlineData("""{"points":[{"metric":"a_b","value":1""")]
    [InlineData("""{"points":[{"metric":"a_b","value":1,"x":[[[[[[[[[[[[1]]]]]]]]]]]]}]}""")]
    [InlineData("{\"points\":[{\"metric\":\"a_b\",\"value\":01}]}")]
    public async Task PostPoints_InvalidJson_400NamesWhereWithoutTheParsersExceptionMessage(string json)
    {
        (HttpStatusCode status, string text) = await PostJsonAsync(json);
        Assert.Equal(HttpStatusCode.BadRequest, status);
        using JsonDocument problem = JsonDocument.Parse(text);
        string detail = problem.RootElement.GetProperty("detail").GetString()!;
        Assert.Contains("not valid JSON", detail, StringComparison.Ordinal);
        Assert.Contains("at line 1, byte", detail, StringComparison.Ordinal);

        // System.Text.Json's exception messages, verbatim in the answer before the fix.
        foreach (string leak in new[] { "LineNumber", "BytePositionInLine", "Expected", "maximum configured depth", "is invalid" })
        {
            Assert.DoesNotContain(leak, detail, StringComparison.Ordinal);
        }
    }

    [Fact]
    public async Task PostPoints_HugeLabelNameRefused_TheAnswerDoesNotEchoIt()
    {
        string name = new('n', 100_000);
        (HttpStatusCode status, string text) = await PostJsonAsync($$$"""{"points":[{"metric":"a_b","value":1,"labels":{"{{{name}}}":1}}]}""");
        Assert.Equal(HttpStatusCode.BadRequest, status);
        Assert.True(text.Length < 2_000, $"the answer is {text.Length} characters: it echoes the body");
        (status, text) = await PostJsonAsync($$$"""{"points":[{"metric":"a_b","value":1,"labels":{"{{{name}}}":"v"}}]}""");
        Assert.Equal(HttpStatusCode.BadRequest, status);
        Assert.True(text.Length < 2_000, $"the answer is {text.Length} characters: it echoes the body");
    }

    [Fact]
    public async Task PostPoints_JsonTimestampsAtTheLongExtremes_EachCountedByItsTimestampReason()
    {
        string metric = ServiceApi.UniqueMetric("extreme");
        long now = ServiceApi.Now;
        string json = $$"""
            {"points":[
              {"metric":"{{metric}}","value":1,"timestamp":9223372036854775807},
              {"metric":"{{metric}}","value":1,"timestamp":-9223372036854775808},
              {"metric":"{{metric}}","value":1,"timestamp":-9223372036854},
              {"metric":"{{metric}}","value":1,"timestamp":9223372036855},
              {"metric":"{{metric}}","value":1,"timestamp":{{now}}},
              {"metric":"{{metric}}","value":1,"timestamp":null},
              {"metric":"{{metric}}","value":1}
            ]}
            """;
        (HttpStatusCode status, string text) = await PostJsonAsync(json);
        Assert.True(status == HttpStatusCode.OK, $"{(int)status} {text}");
        using JsonDocument answer = JsonDocument.Parse(text);
        int accepted = answer.RootElement.GetProperty("accepted").GetInt32();
        int rejected = answer.RootElement.GetProperty("rejected").GetInt32();
        Assert.Equal(3, accepted);
        Assert.Equal(4, rejected);
        int byTimestamp = answer.RootElement.GetProperty("rejectedByReason").EnumerateObject()
            .Where(p => p.Name is "timestamp_out_of_range" or "timestamp_too_old").Sum(p => p.Value.GetInt32());
        Assert.Equal(4, byTimestamp);

        // Beyond a long: not a timestamp at all, the batch is malformed.
        (status, _) = await PostJsonAsync($$"""{"points":[{"metric":"{{metric}}","value":1,"timestamp":9223372036854775808}]}""");
        Assert.Equal(HttpStatusCode.BadRequest, status);
    }

    [Fact]
    public async Task PostPoints_GzipCutShortOrFollowedByBytes_RefusedAsBadGzipNothingWritten()
    {
        // A gzip member whose end (CRC-32 and length) is missing or followed by other bytes is not a whole
        // gzip body, even when the JSON inside happens to be whole; the same body whole is accepted.
        string metric = ServiceApi.UniqueMetric("cutgzip");
        byte[] json = Encoding.UTF8.GetBytes($$"""{"points":[{"metric":"{{metric}}","value":1}]}""");
        using var packed = new MemoryStream();
        using (var gzip = new System.IO.Compression.GZipStream(packed, System.IO.Compression.CompressionLevel.Optimal, leaveOpen: true))
        {
            gzip.Write(json);
        }

        byte[] whole = packed.ToArray();
        double before = await HttpPointsAcceptedAsync();
        byte[][] broken = [whole[..^8], whole[..^4], whole[..^2], [.. whole, 0x00], [.. whole, .. "junk"u8.ToArray()]];
        foreach (byte[] body in broken)
        {
            using HttpResponseMessage response = await ServiceApi.PostAsync(server.Client, body, "application/json", "gzip");
            string text = await response.Content.ReadAsStringAsync();
            Assert.True(response.StatusCode == HttpStatusCode.BadRequest, $"gzip body of {body.Length} of {whole.Length} bytes: {(int)response.StatusCode} {text}");
            Assert.Contains("bad_gzip", text, StringComparison.Ordinal);
        }

        Assert.Equal(before, await HttpPointsAcceptedAsync());
        using HttpResponseMessage ok = await ServiceApi.PostAsync(server.Client, whole, "application/json", "gzip");
        Assert.Equal(HttpStatusCode.OK, ok.StatusCode);
        Assert.Equal(before + 1, await HttpPointsAcceptedAsync());
    }
}
