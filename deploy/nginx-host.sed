# deploy/nginx.conf -> /etc/nginx/nginx.conf on a Debian host with the app on
# 127.0.0.1:5000 (deploy/README.md, step 6). Everything else stays as in the file.
s/^user nginx;/user www-data;/
s#/var/run/nginx\.pid#/run/nginx.pid#
s#/var/cache/nginx/#/var/lib/nginx/#
s/server app:5000 /server 127.0.0.1:5000 /
