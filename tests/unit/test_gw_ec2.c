/* The ec2 provider's pure parts: the Query API request it signs against the EC2 vectors of
 * reference/cloud-apis.md §1.4 (RunInstances, DescribeInstances, TerminateInstances, signed
 * there by botocore's SigV4Auth, an independent implementation); a session token signed in;
 * credentials files; the XML answers (instances, errors); which errors are retried; the user
 * data script, run for real by /bin/sh with a stand-in backend command. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmocka.h>

#include "config.h"
#include "err.h"
#include "provider_ec2.h"

#define SECRET "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY"
#define DATE "20150830T123600Z"
#define HOST "ec2.us-east-1.amazonaws.com"
#define PREFIX                                                                                     \
    "AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20150830/us-east-1/ec2/aws4_request, "                \
    "SignedHeaders=content-type;host;x-amz-date, Signature="

static gw_ec2_creds_t creds(void)
{
    gw_ec2_creds_t c;
    memset(&c, 0, sizeof c);
    strcpy(c.access_key, "AKIDEXAMPLE");
    strcpy(c.secret_key, SECRET);
    return c;
}

static void check_vector(const char *body, const char *signature)
{
    gw_ec2_creds_t c = creds();
    char auth[512];
    assert_int_equal(
        gw_ec2_authorization(&c, "us-east-1", HOST, body, strlen(body), DATE, auth, sizeof auth),
        0);
    char want[512];
    snprintf(want, sizeof want, "%s%s", PREFIX, signature);
    assert_string_equal(auth, want);
}

static void test_vectors(void **state)
{
    (void)state;
    check_vector("Action=RunInstances&ClientToken=framegate-7f3c&ImageId=ami-0123456789abcdef0&"
                 "InstanceType=g5.xlarge&MaxCount=1&MinCount=1&TagSpecification.1.ResourceType="
                 "instance&TagSpecification.1.Tag.1.Key=framegate&TagSpecification.1.Tag.1."
                 "Value=backend&Version=2016-11-15",
                 "50255cbb9deb2b04eee9d451959b32d8e722039971ed00cf5b1b2b73ac9a64df");
    check_vector("Action=DescribeInstances&InstanceId.1=i-1234567890abcdef0&Version=2016-11-15",
                 "e6cd961345fdb8b0ca7e0320146fb506442973be0273c4385833b29a7ea309ee");
    check_vector("Action=TerminateInstances&InstanceId.1=i-1234567890abcdef0&Version=2016-11-15",
                 "ed23b2003665ee965660791253af80cfe4e5d9f1cfe65e067c7c0996be63608f");
    /* one byte of the body changed: another signature */
    gw_ec2_creds_t c = creds();
    char auth[512];
    const char *body =
        "Action=TerminateInstances&InstanceId.1=i-1234567890abcdef1&Version=2016-11-15";
    gw_ec2_authorization(&c, "us-east-1", HOST, body, strlen(body), DATE, auth, sizeof auth);
    assert_null(strstr(auth, "ed23b2003665ee96"));
}

static void test_session_token_signed(void **state)
{
    (void)state;
    gw_ec2_creds_t c = creds();
    strcpy(c.token, "6e86291e8372ff2a2260956d9b8aae1d763fbf315fa00fa31553b73ebf194267");
    char auth[512];
    const char *body = "Action=DescribeInstances&Version=2016-11-15";
    assert_int_equal(
        gw_ec2_authorization(&c, "us-east-1", HOST, body, strlen(body), DATE, auth, sizeof auth),
        0);
    assert_non_null(
        strstr(auth, "SignedHeaders=content-type;host;x-amz-date;x-amz-security-token,"));
}

static void test_credentials_file(void **state)
{
    (void)state;
    gw_ec2_creds_t c;
    const char *text = "# comment\n[default]\naws_access_key_id = AKIADEFAULT\n"
                       "aws_secret_access_key=secretdefault\n\n[prod]\n"
                       "aws_access_key_id=AKIAPROD \naws_secret_access_key = secretprod\n"
                       "aws_session_token = tok\n";
    assert_int_equal(gw_ec2_creds_parse(&c, text, "default"), 0);
    assert_string_equal(c.access_key, "AKIADEFAULT");
    assert_string_equal(c.secret_key, "secretdefault");
    assert_string_equal(c.token, "");
    assert_int_equal(gw_ec2_creds_parse(&c, text, "prod"), 0);
    assert_string_equal(c.access_key, "AKIAPROD");
    assert_string_equal(c.token, "tok");
    assert_int_equal(gw_ec2_creds_parse(&c, text, "missing"), PROTO_ENOTFOUND);
    assert_int_equal(gw_ec2_creds_parse(&c, "[default]\naws_access_key_id=x\n", "default"),
                     PROTO_ENOTFOUND);

    /* the environment wins over the file */
    char path[] = "/tmp/fgawsXXXXXX";
    int fd = mkstemp(path);
    assert_true(fd >= 0);
    assert_true(write(fd, text, strlen(text)) == (ssize_t)strlen(text));
    close(fd);
    setenv("AWS_SHARED_CREDENTIALS_FILE", path, 1);
    unsetenv("AWS_ACCESS_KEY_ID");
    setenv("AWS_PROFILE", "prod", 1);
    assert_int_equal(gw_ec2_creds_load(&c), 0);
    assert_string_equal(c.access_key, "AKIAPROD");
    setenv("AWS_ACCESS_KEY_ID", "AKIAENV", 1);
    setenv("AWS_SECRET_ACCESS_KEY", "secretenv", 1);
    assert_int_equal(gw_ec2_creds_load(&c), 0);
    assert_string_equal(c.access_key, "AKIAENV");
    unsetenv("AWS_ACCESS_KEY_ID");
    unlink(path);
    assert_int_equal(gw_ec2_creds_load(&c), PROTO_ENOTFOUND);
}

static void test_parse(void **state)
{
    (void)state;
    /* DescribeInstances' shape (cloud-apis.md 1.4), two reservations; the tag set and the
     * group set carry <name>-like tags that must not be taken for the state */
    const char *xml =
        "<DescribeInstancesResponse xmlns=\"http://ec2.amazonaws.com/doc/2016-11-15/\">"
        "<requestId>r</requestId><reservationSet><item><reservationId>r-1</reservationId>"
        "<groupSet><item><groupId>sg-1</groupId><groupName>default</groupName></item></groupSet>"
        "<instancesSet><item><instanceId>i-0aaa</instanceId><imageId>ami-1</imageId>"
        "<instanceState><code>16</code><name>running</name></instanceState>"
        "<privateIpAddress>10.0.0.5</privateIpAddress><clientToken>app-instance1-ab</clientToken>"
        "<tagSet><item><key>Name</key><value>app-instance1</value></item></tagSet></item>"
        "</instancesSet></item><item><reservationId>r-2</reservationId><instancesSet><item>"
        "<instanceId>i-0bbb</instanceId><instanceState><code>0</code><name>pending</name>"
        "</instanceState><clientToken/></item></instancesSet></item></reservationSet>"
        "</DescribeInstancesResponse>";
    gw_ec2_instance_t in[4];
    assert_int_equal(gw_ec2_parse_instances(xml, strlen(xml), in, 4), 2);
    assert_string_equal(in[0].id, "i-0aaa");
    assert_string_equal(in[0].state, "running");
    assert_string_equal(in[0].private_ip, "10.0.0.5");
    assert_string_equal(in[0].client_token, "app-instance1-ab");
    assert_string_equal(in[1].id, "i-0bbb");
    assert_string_equal(in[1].state, "pending");
    assert_string_equal(in[1].private_ip, "");
    assert_int_equal(gw_ec2_parse_instances(xml, strlen(xml), in, 1), 1); /* bounded */
    /* truncated: no closing tag, nothing invented */
    assert_int_equal(gw_ec2_parse_instances(xml, 120, in, 4), 0);

    char e[256];
    const char *err = "<Response><Errors><Error><Code>InsufficientInstanceCapacity</Code>"
                      "<Message>no g5 here</Message></Error></Errors><RequestID>x</RequestID>"
                      "</Response>";
    assert_int_equal(gw_ec2_parse_error(err, strlen(err), e, sizeof e), 1);
    assert_string_equal(e, "InsufficientInstanceCapacity: no g5 here");
    assert_int_equal(gw_ec2_parse_error(xml, strlen(xml), e, sizeof e), 0);

    assert_true(gw_ec2_retryable(503, "RequestLimitExceeded: x"));
    assert_true(gw_ec2_retryable(400, "RequestLimitExceeded: x"));
    assert_true(gw_ec2_retryable(500, "InternalError: x"));
    assert_true(gw_ec2_retryable(0, "connection refused"));
    assert_true(gw_ec2_retryable(400, "InsufficientInstanceCapacity: x"));
    assert_false(gw_ec2_retryable(403, "SignatureDoesNotMatch: x"));
    assert_false(gw_ec2_retryable(400, "InvalidAMIID.NotFound: x"));
}

/* The script runs: /bin/sh writes the PEMs and execs the backend command with the model, the
 * token, the advertised address and the join URL (a stand-in command prints its arguments). */
static void test_user_data_runs(void **state)
{
    (void)state;
    static gw_config_t cfg;
    gw_config_defaults(&cfg);
    char dir[] = "/tmp/fgudXXXXXX";
    assert_non_null(mkdtemp(dir));
    snprintf(cfg.cloud_backend_command, sizeof cfg.cloud_backend_command, "%s/be.sh", dir);
    char path[300];
    snprintf(path, sizeof path, "%s/be.sh", dir);
    FILE *f = fopen(path, "w");
    fprintf(f, "#!/bin/sh\nfor a in \"$@\"; do echo \"[$a]\"; done > \"$FG_ETC/args\"\n");
    fclose(f);
    chmod(path, 0700);
    gw_model_t m;
    memset(&m, 0, sizeof m);
    strcpy(m.name, "face");
    strcpy(m.backend_args, "--simulate-ms 5");
    char ud[16384];
    int n = gw_ec2_user_data(&cfg, &m, "face-instance2-0011", "tls+tcp://10.0.0.1:7700", "CA PEM\n",
                             "CERT PEM\n", "KEY PEM\n", ud, sizeof ud);
    assert_true(n > 0);
    assert_int_equal(gw_ec2_user_data(&cfg, &m, "t", "j", "a", "b", "c", ud, 100), -1);
    n = gw_ec2_user_data(&cfg, &m, "face-instance2-0011", "tls+tcp://10.0.0.1:7700", "CA PEM\n",
                         "CERT PEM\n", "KEY PEM\n", ud, sizeof ud);
    char script[300], cmd[1200];
    snprintf(script, sizeof script, "%s/ud.sh", dir);
    f = fopen(script, "w");
    fwrite(ud, 1, (size_t)n, f);
    fclose(f);
    snprintf(cmd, sizeof cmd, "FG_ETC=%s FG_ADDR=10.0.0.9 /bin/sh %s", dir, script);
    assert_int_equal(system(cmd), 0);
    char args[2048] = "", keyfile[300], key[64] = "";
    snprintf(path, sizeof path, "%s/args", dir);
    f = fopen(path, "r");
    assert_non_null(f);
    size_t got = fread(args, 1, sizeof args - 1, f);
    args[got] = '\0';
    fclose(f);
    assert_non_null(strstr(args, "[--model-name]\n[face]\n[--instance]\n[face-instance2-0011]"));
    assert_non_null(strstr(args, "[--advertise]\n[tls+tcp://10.0.0.9:7000]"));
    assert_non_null(strstr(args, "[--listen]\n[tls+tcp://0.0.0.0:7000]"));
    assert_non_null(strstr(args, "[--join]\n[tls+tcp://10.0.0.1:7700]"));
    assert_non_null(strstr(args, "[--simulate-ms]\n[5]"));
    snprintf(keyfile, sizeof keyfile, "%s/backend.key", dir);
    f = fopen(keyfile, "r");
    assert_non_null(f);
    got = fread(key, 1, sizeof key - 1, f);
    key[got] = '\0';
    fclose(f);
    assert_string_equal(key, "KEY PEM\n");
    snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
    assert_int_equal(system(cmd), 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_vectors),          cmocka_unit_test(test_session_token_signed),
        cmocka_unit_test(test_credentials_file), cmocka_unit_test(test_parse),
        cmocka_unit_test(test_user_data_runs),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
