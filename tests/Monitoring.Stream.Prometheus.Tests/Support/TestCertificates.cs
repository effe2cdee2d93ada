using System.Security.Cryptography;
using System.Security.Cryptography.X509Certificates;

namespace Monitoring.Stream.Prometheus.Tests.Support;

/// <summary>A throw-away certificate authority and a server certificate for 127.0.0.1 that it signed.</summary>
internal sealed class TestCertificates : IDisposable
{
    public TestCertificates()
    {
        using RSA caKey = RSA.Create(2048);
        var caRequest = new CertificateRequest("CN=Monitoring.Stream test CA", caKey, HashAlgorithmName.SHA256, RSASignaturePadding.Pkcs1);
        caRequest.CertificateExtensions.Add(new X509BasicConstraintsExtension(true, false, 0, true));
        caRequest.CertificateExtensions.Add(new X509KeyUsageExtension(X509KeyUsageFlags.KeyCertSign | X509KeyUsageFlags.CrlSign, true));
        DateTimeOffset now = DateTimeOffset.UtcNow;
        using X509Certificate2 ca = caRequest.CreateSelfSigned(now.AddDays(-1), now.AddDays(1));

        using RSA serverKey = RSA.Create(2048);
        var serverRequest = new CertificateRequest("CN=127.0.0.1", serverKey, HashAlgorithmName.SHA256, RSASignaturePadding.Pkcs1);
        var names = new SubjectAlternativeNameBuilder();
        names.AddIpAddress(System.Net.IPAddress.Loopback);
        serverRequest.CertificateExtensions.Add(names.Build());
        serverRequest.CertificateExtensions.Add(new X509EnhancedKeyUsageExtension([new Oid("1.3.6.1.5.5.7.3.1")], false));
        using X509Certificate2 signed = serverRequest.Create(ca, now.AddHours(-1), now.AddHours(12), [1, 2, 3, 4]);
        using X509Certificate2 withKey = signed.CopyWithPrivateKey(serverKey);
        Server = X509CertificateLoader.LoadPkcs12(withKey.Export(X509ContentType.Pkcs12), null);

        CaFile = Path.Combine(Path.GetTempPath(), $"ms-ca-{Guid.NewGuid():N}.pem");
        File.WriteAllText(CaFile, ca.ExportCertificatePem());
    }

    public X509Certificate2 Server { get; }

    /// <summary>The CA's certificate as a PEM file.</summary>
    public string CaFile { get; }

    public void Dispose()
    {
        Server.Dispose();
        File.Delete(CaFile);
    }
}
