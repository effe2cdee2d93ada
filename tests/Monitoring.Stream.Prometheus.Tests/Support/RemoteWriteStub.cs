using System.Globalization;
using System.Net;
using System.Net.Security;
using System.Net.Sockets;
using System.Security.Authentication;
using System.Security.Cryptography.X509Certificates;
using System.Text;

namespace Monitoring.Stream.Prometheus.Tests.Support;

/// <summary>
/// A remote-write receiver on 127.0.0.1 speaking plain HTTP/1.1 over a socket, so that a test decides exactly what
/// each request gets: a status, no answer at all (decided once the body is read), or a connection reset in the
/// middle of the body (decided from the attempt number, before it is read).
/// </summary>
internal sealed class RemoteWriteStub : IAsyncDisposable
{
    private readonly TcpListener _listener = new(IPAddress.Loopback, 0);
    private readonly Func<StubRequest, StubResponse> _behaviour;
    private readonly Func<int, bool> _closeMidBody;
    private readonly CancellationTokenSource _stop = new();
    private readonly List<StubRequest> _requests = [];
    private readonly List<Task> _connections = [];
    private readonly Task _accept;
    private int _attempts;

    private readonly X509Certificate2? _certificate;

    public RemoteWriteStub(Func<StubRequest, StubResponse> behaviour, Func<int, bool>? closeMidBodyOnAttempt = null, X509Certificate2? certificate = null)
    {
        _certificate = certificate;
        _behaviour = behaviour;
        _closeMidBody = closeMidBodyOnAttempt ?? (_ => false);
        _listener.Start();
        _accept = AcceptAsync();
    }

    public Uri Endpoint => new($"{(_certificate is null ? "http" : "https")}://127.0.0.1:{((IPEndPoint)_listener.LocalEndpoint).Port}/api/v1/write");

    public int Attempts => Volatile.Read(ref _attempts);

    public IReadOnlyList<StubRequest> Requests
    {
        get
        {
            lock (_requests)
            {
                return [.. _requests];
            }
        }
    }

    /// <summary>Samples of the requests answered with a 2xx, in the order they were received.</summary>
    public List<DecodedSample> Accepted => [.. Requests.Where(r => r.Status is >= 200 and < 300).SelectMany(r => r.Samples!)];

    private async Task AcceptAsync()
    {
        try
        {
            while (true)
            {
                Socket socket = await _listener.AcceptSocketAsync(_stop.Token);
                lock (_connections)
                {
                    // Each connection on its own task: a behaviour that blocks (to hold a request) must not hold up the accept loop.
                    _connections.Add(Task.Run(() => ServeAsync(socket)));
                }
            }
        }
        catch (Exception e) when (e is OperationCanceledException or SocketException or ObjectDisposedException)
        {
            // Stopped.
        }
    }

    private async Task ServeAsync(Socket socket)
    {
        using var network = new NetworkStream(socket, ownsSocket: true);
        using var tls = _certificate is null ? null : new SslStream(network);
        System.IO.Stream stream = network;
        var buffer = new List<byte>();
        var chunk = new byte[64 * 1024];
        try
        {
            if (tls is not null)
            {
                await tls.AuthenticateAsServerAsync(new SslServerAuthenticationOptions { ServerCertificate = _certificate }, _stop.Token);
                stream = tls;
            }

            while (true)
            {
                // Headers.
                int end;
                while ((end = HeaderEnd(buffer)) < 0)
                {
                    int n = await stream.ReadAsync(chunk, _stop.Token);
                    if (n == 0)
                    {
                        return;
                    }

                    buffer.AddRange(chunk.AsSpan(0, n));
                }

                string[] lines = Encoding.ASCII.GetString([.. buffer.Take(end)]).Split("\r\n");
                buffer.RemoveRange(0, end + 4);
                var headers = new Dictionary<string, string>(StringComparer.OrdinalIgnoreCase);
                foreach (string line in lines.Skip(1))
                {
                    int colon = line.IndexOf(':', StringComparison.Ordinal);
                    headers[line[..colon].Trim()] = line[(colon + 1)..].Trim();
                }

                int length = int.Parse(headers["Content-Length"], CultureInfo.InvariantCulture);
                var request = new StubRequest(Interlocked.Increment(ref _attempts), headers, length, DateTime.UtcNow);
                lock (_requests)
                {
                    _requests.Add(request);
                }

                bool closeMidBody = _closeMidBody(request.Attempt);
                int wanted = closeMidBody ? length / 2 : length;
                while (buffer.Count < wanted)
                {
                    int n = await stream.ReadAsync(chunk, _stop.Token);
                    if (n == 0)
                    {
                        return;
                    }

                    buffer.AddRange(chunk.AsSpan(0, n));
                }

                if (closeMidBody)
                {
                    socket.LingerState = new LingerOption(true, 0);
                    return;
                }

                byte[] body = [.. buffer.Take(length)];
                buffer.RemoveRange(0, length);
                request.Samples = RemoteWriteRequestReader.Decode(body);
                StubResponse response = _behaviour(request);
                if (response == StubResponse.NeverAnswer)
                {
                    await Task.Delay(Timeout.Infinite, _stop.Token);
                }

                request.Status = response.Status;
                var text = new StringBuilder();
                text.Append(CultureInfo.InvariantCulture, $"HTTP/1.1 {response.Status} Stub\r\nContent-Length: {Encoding.UTF8.GetByteCount(response.Body)}\r\n");
                foreach (KeyValuePair<string, string> header in response.Headers ?? new Dictionary<string, string>())
                {
                    text.Append(CultureInfo.InvariantCulture, $"{header.Key}: {header.Value}\r\n");
                }

                text.Append("\r\n").Append(response.Body);
                await stream.WriteAsync(Encoding.UTF8.GetBytes(text.ToString()), _stop.Token);
            }
        }
        catch (Exception e) when (e is OperationCanceledException or IOException or SocketException or AuthenticationException)
        {
            // The client went away or refused the certificate, or the stub stops.
        }
    }

    private static int HeaderEnd(List<byte> buffer)
    {
        for (int i = 0; i + 3 < buffer.Count; i++)
        {
            if (buffer[i] == '\r' && buffer[i + 1] == '\n' && buffer[i + 2] == '\r' && buffer[i + 3] == '\n')
            {
                return i;
            }
        }

        return -1;
    }

    public async ValueTask DisposeAsync()
    {
        await _stop.CancelAsync();
        _listener.Stop();
        await _accept;
        Task[] connections;
        lock (_connections)
        {
            connections = [.. _connections];
        }

        await Task.WhenAll(connections);
        _stop.Dispose();
    }
}
