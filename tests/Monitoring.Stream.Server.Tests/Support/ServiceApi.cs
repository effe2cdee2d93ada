using System.Net.Http.Headers;
using System.Net.Sockets;
using System.Text;
using System.Text.Json;
using Monitoring.Stream.Kafka.WireFormat;
using Monitoring.Stream.Model;

namespace Monitoring.Stream.Server.Tests.Support;

/// <summary>Helpers to talk to the service.</summary>
internal static class ServiceApi
{
    /// <summary>A metric name no other test uses.</summary>
    public static string UniqueMetric(string prefix) => $"{prefix}_{Guid.NewGuid():N}";

    /// <summary>Milliseconds since the epoch, now.</summary>
    public static long Now => DateTimeOffset.UtcNow.ToUnixTimeMilliseconds();

    /// <summary>A MessagePack body (docs/wire-format.md) of one series.</summary>
    public static byte[] MessagePack(string metric, Label[] labels, IEnumerable<double> values, long timestampUnixMs)
    {
        var encoder = new PointBatchEncoder();
        int series = encoder.AddSeries(metric, labels);
        foreach (double v in values)
        {
            encoder.Add(series, v, timestampUnixMs);
        }

        return encoder.ToArray();
    }

    /// <summary>A MessagePack body of one series without labels, each point with its own timestamp.</summary>
    public static byte[] MessagePackAt(string metric, IEnumerable<(long TimestampUnixMs, double Value)> points)
    {
        var encoder = new PointBatchEncoder();
        int series = encoder.AddSeries(metric, []);
        foreach ((long ts, double v) in points)
        {
            encoder.Add(series, v, ts);
        }

        return encoder.ToArray();
    }

    /// <summary>Posts a body to the ingest endpoint.</summary>
    public static async Task<HttpResponseMessage> PostAsync(HttpClient client, byte[] body, string contentType, string? encoding = null)
    {
        var content = new ByteArrayContent(body);
        content.Headers.ContentType = MediaTypeHeaderValue.Parse(contentType);
        if (encoding is not null)
        {
            content.Headers.ContentEncoding.Add(encoding);
        }

        return await client.PostAsync(new Uri("/api/v1/points", UriKind.Relative), content);
    }

    /// <summary>Reads a JSON answer.</summary>
    public static async Task<JsonElement> JsonAsync(HttpResponseMessage response)
    {
        string text = await response.Content.ReadAsStringAsync();
        using JsonDocument document = JsonDocument.Parse(text);
        return document.RootElement.Clone();
    }

    /// <summary>Gets JSON, asserting the status.</summary>
    public static async Task<JsonElement> GetJsonAsync(HttpClient client, string path, System.Net.HttpStatusCode expected = System.Net.HttpStatusCode.OK)
    {
        using HttpResponseMessage response = await client.GetAsync(new Uri(path, UriKind.Relative));
        string text = await response.Content.ReadAsStringAsync();
        Assert.True(expected == response.StatusCode, $"GET {path}: {(int)response.StatusCode} {text}");
        using JsonDocument document = JsonDocument.Parse(text);
        return document.RootElement.Clone();
    }

    /// <summary>Opens a raw connection to the service and sends <paramref name="head"/> (request line and headers).</summary>
    public static async Task<TcpClient> RawAsync(Uri address, string head)
    {
        var tcp = new TcpClient();
        await tcp.ConnectAsync(address.Host, address.Port);
        await tcp.GetStream().WriteAsync(Encoding.ASCII.GetBytes(head));
        return tcp;
    }

    /// <summary>Reads what the server sends until it closes or <paramref name="timeout"/> passes (then null).</summary>
    public static async Task<string?> ReadUntilClosedAsync(TcpClient tcp, TimeSpan timeout)
    {
        using var cts = new CancellationTokenSource(timeout);
        var text = new StringBuilder();
        var buffer = new byte[4096];
        try
        {
            while (true)
            {
                int read = await tcp.GetStream().ReadAsync(buffer, cts.Token);
                if (read == 0)
                {
                    return text.ToString();
                }

                text.Append(Encoding.ASCII.GetString(buffer, 0, read));
            }
        }
        catch (OperationCanceledException)
        {
            return null;
        }
        catch (IOException)
        {
            return text.ToString(); // reset by the server
        }
    }

    /// <summary>Reads until the server has sent a response's status line, or <paramref name="timeout"/> passes (then null).</summary>
    public static async Task<string?> ReadStatusLineAsync(TcpClient tcp, TimeSpan timeout)
    {
        using var cts = new CancellationTokenSource(timeout);
        var text = new StringBuilder();
        var buffer = new byte[4096];
        try
        {
            while (!text.ToString().Contains("\r\n", StringComparison.Ordinal))
            {
                int read = await tcp.GetStream().ReadAsync(buffer, cts.Token);
                if (read == 0)
                {
                    break;
                }

                text.Append(Encoding.ASCII.GetString(buffer, 0, read));
            }

            return text.ToString();
        }
        catch (OperationCanceledException)
        {
            return null;
        }
    }
}
